"""The client's error classes against the codes the served OpenAPI document lists, so the two
cannot drift: every code the server documents has its class (the client may know more — it
knows ``scope_not_stored`` before the server answers it), each named after its code. A code
the client does not know yet is still a ``TokenVaultError`` carrying it.
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import datetime, timezone

import pytest

import tokenvault_client
from stand_in import StandIn
from tokenvault_client import ERRORS_BY_CODE, TokenVaultClient, TokenVaultError
from tokenvault_client._models import parse_time


def class_name(code: str) -> str:
    name = "".join(part.capitalize() for part in code.split("_"))
    return "InternalError" if name == "Internal" else name


@pytest.mark.integration
def test_every_code_the_served_document_lists_has_its_class(served_vault):
    with urllib.request.urlopen(f"{served_vault.url}/api/openapi.json", timeout=10) as answer:
        document = json.load(answer)
    served = set(document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
    assert served and served <= set(ERRORS_BY_CODE), f"no class for {served - set(ERRORS_BY_CODE)}"
    # The codes each operation's error responses name (in their descriptions) too.
    answered = {code for path in document["paths"].values() for operation in path.values()
                if isinstance(operation, dict) for response in operation["responses"].values()
                for code in re.findall(r"`([a-z_]+)`:", response["description"])}
    assert answered and answered <= set(ERRORS_BY_CODE), f"no class for {answered - set(ERRORS_BY_CODE)}"


def test_each_class_is_named_after_its_code_and_exported():
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.CODE == code and cls.__name__ == class_name(code)
        assert getattr(tokenvault_client, cls.__name__) is cls and cls.__name__ in tokenvault_client.__all__
    exported = [getattr(tokenvault_client, n) for n in tokenvault_client.__all__]
    errors = {c for c in exported if isinstance(c, type) and issubclass(c, TokenVaultError)}
    assert errors - set(ERRORS_BY_CODE.values()) == {TokenVaultError,
                                                     tokenvault_client.TokenVaultAuthenticationError}


def test_a_code_the_client_does_not_know_is_a_token_vault_error_with_that_code():
    with StandIn() as stand_in, TokenVaultClient(stand_in.url, client_id=stand_in.client_id,
                                                 retry_total=0) as client:
        stand_in.fail_next("store", 418, "brand_new_code")
        with pytest.raises(TokenVaultError) as raised:
            client.store(["api://x/y"], user_token=stand_in.mint("t", "u"))
    assert type(raised.value) is TokenVaultError
    assert (raised.value.code, raised.value.status) == ("brand_new_code", 418)
    assert "brand_new_code" in str(raised.value) and raised.value.correlation_id


@pytest.mark.parametrize("text, expected", [
    ("2026-11-01T12:00:00Z", datetime(2026, 11, 1, 12, tzinfo=timezone.utc)),
    ("2026-11-01T12:00:00.123456Z", datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2026-11-01T12:00:00.5Z", datetime(2026, 11, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)),
    ("2026-11-01T14:00:00.1234567+02:00", datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
])
def test_times_are_read_as_aware_utc_datetimes_as_python_3_9_can(text, expected):
    assert parse_time(text) == expected and parse_time(text).tzinfo is timezone.utc


@pytest.mark.parametrize("text", ["2026-11-01T12:00:00", "yesterday", "2026-11-01 12:00:00Z"])
def test_a_time_without_an_offset_is_refused(text):
    with pytest.raises(ValueError):
        parse_time(text)
