"""Property-based fuzzing of the API against its own OpenAPI document: schemathesis reads
``/api/openapi.json`` as the dev host serves it (a real process, over real HTTP, with Azurite, the
Entra fake and a keyring behind it), generates valid and invalid requests for every
operation, and checks each answer against the document: no 5xx, a documented status, the
documented content type, headers and body schema, and invalid input rejected.

Requests carry what the generator made of the ``Authorization`` header (garbage, or nothing
in negative cases), or — drawn per example — a real token minted by the Entra fake: a user of
the onboarded tenant (sometimes aimed at its own record, so the success paths are reached),
an allowed app with both roles, or an app that is not allowed. Bounded and derandomized:
the same examples every run, about 25 s. ``database=None``: no example database is
written (Hypothesis' plugin still caches the constants it scans at collection in
``.hypothesis/``, which ignores itself in git).

(``schemathesis.pytest.from_fixture`` would load the schema lazily, but it sets
``Node._nodeid``, which pytest 9.2 no longer has; drawing each operation's strategy with
``st.data()`` is the same generation without it.)
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.devhost_process import onboarded_devhost
from tests.support.stack_fixtures import CALLER_APP, CALLER_TENANT, SCOPES, STRANGER_APP, new_id
from tests.support.stack_fixtures import CALLERS as CALLER_LIST

POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
TENANT, USER = new_id(), new_id()
RECORD = "/tokens/{tenant_id}/{user_id}"
OPERATIONS = [("/tokens", "POST"), ("/tokens/redeem", "POST"), (RECORD, "GET"), (RECORD, "DELETE"),
              ("/health", "GET"), ("/openapi.json", "GET")]
# Nothing in the anonymous operations can be made invalid: they are fuzzed positively only.
CASES = [(path, method, mode) for path, method in OPERATIONS for mode in (POSITIVE, NEGATIVE)
         if mode is POSITIVE or path.startswith("/tokens")]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
CALLERS = ("generated", "user", "own record", "allowed app", "unlisted app")


@pytest.fixture(scope="module")
def served(tmp_path_factory, azurite, entra_server, ca, client_id, client_secret):
    with onboarded_devhost(tmp_path_factory.mktemp("fuzz"), TENANT, azurite=azurite,
                           entra=entra_server, ca=ca, client_id=client_id,
                           client_secret=client_secret, redeem_callers=CALLER_LIST) as host:
        yield host


@pytest.fixture(scope="module")
def http():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture(scope="module")
def api_schema(served, http, entra_server):
    # USER has a record, so redeem, describe and forget of their own can succeed.
    stored = http.post(f"{served.api}/tokens", json={"scopes": SCOPES},
                       headers={"Authorization": f"Bearer {entra_server.user_token(TENANT, USER)}"})
    assert stored.status_code == 201
    # Fetched through our session (no proxy from the environment for 127.0.0.1): the
    # document exactly as the dev host serves it.
    document = http.get(f"{served.api}/openapi.json")
    assert document.status_code == 200
    return schemathesis.openapi.from_dict(document.json())


@pytest.fixture(scope="module")
def tokens(entra_server) -> dict[str, str]:
    return {"user": entra_server.user_token(TENANT, new_id()),
            "own record": entra_server.user_token(TENANT, USER),
            "allowed app": entra_server.app_token(CALLER_TENANT, CALLER_APP,
                                                  roles=["TokenVault.Redeem", "TokenVault.Admin"]),
            "unlisted app": entra_server.app_token(new_id(), STRANGER_APP,
                                                   roles=["TokenVault.Redeem", "TokenVault.Admin"])}


@pytest.mark.parametrize("path, method, mode", CASES,
                         ids=[f"{m} {p} {g.value}" for p, m, g in CASES])
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_answer_matches_the_document(api_schema, served, http, tokens, path, method, mode,
                                           data):
    operation = api_schema[path][method]
    caller = data.draw(st.sampled_from(CALLERS), label="caller")
    own = caller == "own record" and path == RECORD and mode is POSITIVE
    strategy = operation.as_strategy(mode, path_parameters={"tenant_id": TENANT, "user_id": USER}
                                     if own else None)
    case = data.draw(strategy, label="case")
    headers = None
    # A case whose headers are the invalid part keeps them: it is the missing-token probe.
    if caller != "generated" and not case.meta.is_negative_at("header"):
        headers = {"Authorization": f"Bearer {tokens[caller]}"}
    case.call_and_validate(base_url=served.api, session=http, headers=headers, checks=CHECKS)
