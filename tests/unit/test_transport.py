"""The adapters' HTTP plumbing: the environment is read per request only when it configures
a proxy or a CA bundle, and connection pools are sized for the sweep's concurrency."""

import json
from pathlib import Path

import pytest

from tokenvault.adapters.transport import (
    HOST_MESSAGES,
    azure_client_options,
    environment_configured,
    http_session,
    pool_size,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("environ, configured", [
    ({}, False),
    ({"PATH": "/usr/bin", "HOME": "/home/app", "WEBSITE_INSTANCE_ID": "x"}, False),
    ({"HTTPS_PROXY": ""}, False),
    ({"HTTPS_PROXY": "http://proxy:3128"}, True),
    ({"http_proxy": "http://proxy:3128"}, True),
    ({"all_proxy": "socks5://proxy"}, True),
    ({"NO_PROXY": "127.0.0.1"}, True),
    ({"REQUESTS_CA_BUNDLE": "/tmp/ca.pem"}, True),
    ({"CURL_CA_BUNDLE": "/tmp/ca.pem"}, True),
])
def test_the_environment_matters_only_when_it_configures_a_proxy_or_a_ca_bundle(environ, configured):
    assert environment_configured(environ) is configured
    assert http_session(environ=environ).trust_env is configured
    assert azure_client_options(environ=environ)["use_env_settings"] is configured


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
