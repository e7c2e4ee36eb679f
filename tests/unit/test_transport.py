"""The adapters' HTTP plumbing: the environment is read per request only when it configures
a proxy or a CA bundle, and connection pools are sized for the sweep's concurrency."""

import json
from pathlib import Path

import pytest

from tokenvault.adapters.transport import (
    HOST_MESSAGES,
    azure_client_options,
    http_session,
    pool_size,
    proxy_configured,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("environ, proxy", [
    ({}, False),
    ({"PATH": "/usr/bin", "HOME": "/home/app", "WEBSITE_INSTANCE_ID": "x"}, False),
    ({"HTTPS_PROXY": ""}, False),
    ({"HTTPS_PROXY": "http://proxy:3128"}, True),
    ({"http_proxy": "http://proxy:3128"}, True),
    ({"all_proxy": "socks5://proxy"}, True),
    ({"NO_PROXY": "127.0.0.1"}, True),
    ({"REQUESTS_CA_BUNDLE": "/tmp/ca.pem"}, False),
])
def test_the_environment_is_read_per_request_only_when_it_configures_a_proxy(environ, proxy):
    assert proxy_configured(environ) is proxy
    assert http_session(environ=environ).trust_env is proxy
    assert azure_client_options(environ=environ)["use_env_settings"] is proxy


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_in_the_environment_is_read_once_and_handed_over(variable):
    environ = {variable: "/etc/local-ca.pem"}
    assert http_session(environ=environ).verify == "/etc/local-ca.pem"
    assert azure_client_options(environ=environ)["connection_verify"] == "/etc/local-ca.pem"
    transport = azure_client_options(environ=environ, pool=20)["transport"]
    assert transport.connection_config.verify == "/etc/local-ca.pem"
    # What the caller says wins; and with a proxy requests reads the bundle itself.
    given = azure_client_options({"connection_verify": "/mine.pem"}, environ=environ)
    assert given["connection_verify"] == "/mine.pem"
    assert http_session(environ={**environ, "HTTPS_PROXY": "http://p"}).verify is True
    assert http_session(environ={}).verify is True


def test_a_session_keeps_as_many_connections_as_asked():
    session = http_session(pool=48, environ={})
    assert session.get_adapter("https://login.microsoftonline.com")._pool_maxsize == 48


def test_each_azure_client_gets_a_transport_of_its_own_with_the_pool_and_the_options():
    options = {"connection_timeout": 3, "read_timeout": 5, "retry_total": 2}
    first = azure_client_options(options, pool=48, environ={})
    second = azure_client_options(options, pool=48, environ={})
    assert first["transport"] is not second["transport"]
    transport = first["transport"]
    assert transport.session.trust_env is False
    adapter = transport.session.get_adapter("https://account.table.core.windows.net")
    assert adapter._pool_maxsize == 48 and adapter.max_retries.total is False
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (3, 5)
    assert first["retry_total"] == 2 and "transport" not in options
    assert "transport" not in azure_client_options(options, environ={})  # no pool: the SDK's


def test_pools_cover_every_message_the_host_works_at_once():
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert HOST_MESSAGES == queues["batchSize"] + queues["newBatchThreshold"]
    assert pool_size(8) == 8 * HOST_MESSAGES and pool_size(1) == 10
