"""engine/gateway.py: the gateway's own services, by spelling, and what the policy lists."""

from __future__ import annotations

import ipaddress

import pytest

from socialguard.engine.gateway import decide_gateway, is_gateway_host, parse_gateway_service
from socialguard.engine.model import Principal

WHO = Principal("10.20.1.5")


@pytest.mark.parametrize(
    ("text", "network", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1/32", 8080),
        ("[::1]:8080", "::1/128", 8080),
        ("127.0.0.1", "127.0.0.1/32", None),
        ("::1", "::1/128", None),
        ("127.0.0.0/8", "127.0.0.0/8", None),
    ],
)
def test_a_gateway_service_is_an_address_or_network_with_an_optional_port(
    text: str, network: str, port: int | None
) -> None:
    assert parse_gateway_service(text) == (ipaddress.ip_network(network), port)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("localhost:80", "not ADDRESS"),
        ("127.0.0.1:0", "port must be"),
        ("127.0.0.1:http", "port must be"),
        ("[::1", "unclosed"),
        ("127.0.0.1/8", "not ADDRESS"),
    ],
)
def test_a_bad_gateway_service_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_gateway_service(text)


@pytest.mark.parametrize(
    ("host", "on_gateway"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("0.0.0.0", True), ("::", True),
     ("localhost", True), ("db.localhost", True), ("10.0.0.1", False), ("example.org", False),
     ("localhost.example.org", False)],
)  # fmt: skip
def test_the_gateway_is_known_by_its_spellings(host: str, on_gateway: bool) -> None:
    assert is_gateway_host(host) is on_gateway


def test_a_gateway_service_is_refused_unless_listed() -> None:
    refused = decide_gateway("v1", (), "127.0.0.1", 9180, WHO, listener=False)
    assert refused is not None and refused.action == "block"
    listed = (parse_gateway_service("127.0.0.1:9180"),)
    assert decide_gateway("v1", listed, "127.0.0.1", 9180, WHO, listener=False) is None
    assert decide_gateway("v1", listed, "localhost", 9180, WHO, listener=False) is None
    assert decide_gateway("v1", listed, "127.0.0.1", 9181, WHO, listener=False) is not None
    assert decide_gateway("v1", (), "example.org", 443, WHO, listener=False) is None


def test_the_proxys_own_socket_is_refused_whatever_is_listed() -> None:
    everything = (parse_gateway_service("0.0.0.0/0"), parse_gateway_service("127.0.0.0/8"))
    refused = decide_gateway("v1", everything, "127.0.0.1", 8080, WHO, listener=True)
    assert refused is not None and "loop" in refused.reason
