"""Connections the proxy must not relay opaquely (issue 17, item 1).

Each case opens a tunnel through the real proxy and speaks what a determined client would: bytes
that are neither TLS nor HTTP, or a TLS ClientHello whose record-layer version bytes are not the
ones mitmproxy looks for (`16 03 04`: OpenSSL and others accept any on the first record). The
assertion is on what reached the recording origin and on what the decision log says.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from conftest import (  # type: ignore[import-not-found]
    TEST_RULES,  # type: ignore[import-not-found]
    tls_over_tunnel,
    tunnel,
)

pytestmark = pytest.mark.e2e

RAW = b"SSH-2.0-OpenSSH_9.6 not TLS and not HTTP\r\n"  # mitmproxy relays it as raw TCP

NETWORK_RULES = TEST_RULES.replace(
    "    domains: [facebook.com, instagram.com, tiktok.com]\n",
    "    domains: [facebook.com, instagram.com, tiktok.com]\n    networks: [203.0.113.0/24]\n",
)


def _send_raw(proxy: Any, target: str) -> bytes:
    """Open a tunnel to `target`, send RAW, and return what came back before the proxy closed."""
    with tunnel(proxy, target) as sock:
        try:
            sock.sendall(RAW)
            return sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return b""


def _common_name(cert: Path) -> str:
    subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject
    return str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _connection_records(proxy: Any) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("stage") in ("connection", "tcp")]


def test_raw_bytes_to_a_blocked_host_are_never_relayed(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    answer = _send_raw(proxy, "www.facebook.com:443")
    assert not origin.saw(RAW), "the raw bytes reached the origin"
    assert answer == b""
    [record] = _connection_records(proxy)
    assert (record["stage"], record["action"]) == ("tcp", "block")
    assert record["host"] == "www.facebook.com"


def test_raw_bytes_to_a_blocked_network_are_never_relayed(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy(NETWORK_RULES)
    answer = _send_raw(proxy, "203.0.113.7:443")
    assert not origin.saw(RAW), "the raw bytes reached the origin"
    assert answer == b""
    [record] = _connection_records(proxy)
    assert (record["stage"], record["action"]) == ("tcp", "block")
    assert record["category"] == "social"


def test_raw_bytes_to_a_destination_no_rule_concerns_are_relayed_and_recorded(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    answer = _send_raw(proxy, "www.example.org:443")
    assert origin.saw(RAW) and answer == RAW, "an opaque stream no rule concerns passes"
    [record] = _connection_records(proxy)
    assert (record["stage"], record["action"], record["verdict"]) == ("tcp", "pass", "pass")


@pytest.mark.parametrize(
    ("version", "split_at"),
    [(b"\x03\x04", None), (b"\x03\x09", None), (b"\x00\x05", None), (b"\x03\x04", 3),
     (b"\x03\x04", 100)],
)  # fmt: skip
def test_a_clienthello_with_odd_record_version_is_handled_as_tls(
    start_proxy: Any, origin: Any, version: bytes, split_at: int | None
) -> None:
    """The bypass: mitmproxy took `16 03 04` for raw TCP and relayed it; the client then met the
    origin's own certificate and browsed the blocked site."""
    proxy = start_proxy()
    trust = ssl.create_default_context(cafile=str(proxy.ca))
    trust.load_verify_locations(cafile=str(origin.cert))  # either may answer: we look which did
    with tunnel(proxy, "www.facebook.com:443") as sock:
        tls = tls_over_tunnel(
            sock, "www.facebook.com", trust, record_version=version, split_at=split_at
        )
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])["commonName"]
        tls.write(b"GET /secret HTTP/1.1\r\nHost: www.facebook.com\r\nAccept: text/html\r\n\r\n")
        answer = tls.read_all()
    assert issuer == _common_name(proxy.ca), "the client met the origin itself"
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert not origin.saw(b"/secret")
    assert not [c for c in origin.connections if c.sni == "www.facebook.com"]
    stages = [(r["stage"], r["action"]) for r in proxy.records() if r.get("type") == "decision"]
    assert ("request", "block") in stages


def test_a_passed_through_clienthello_with_odd_record_version_reaches_the_origin(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    trust = ssl.create_default_context(cafile=str(origin.cert))
    with tunnel(proxy, "www.example.org:443") as sock:
        tls = tls_over_tunnel(sock, "www.example.org", trust, record_version=b"\x03\x04")
        tls.write(b"GET /fine HTTP/1.1\r\nHost: www.example.org\r\n\r\n")
        answer = tls.read_all()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    [conn] = [c for c in origin.connections if c.requests]
    assert conn.sni == "www.example.org"
    [record] = _connection_records(proxy)
    assert (record["stage"], record["verdict"]) == ("connection", "pass")


def test_a_truncated_odd_hello_is_refused_not_relayed(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    with tunnel(proxy, "www.facebook.com:443") as sock:
        sock.sendall(b"\x16\x03\x04\x00\x30\x01\x00\x00\x2c" + b"\x03\x03" + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
        try:
            rest = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            rest = b""
    assert rest == b""
    assert origin.count() == 0


def test_a_non_http_protocol_inside_inspected_tls_is_never_relayed(
    start_proxy: Any, origin: Any
) -> None:
    """Port 443 carrying something other than HTTP inside TLS: decrypted, it cannot be decided."""
    proxy = start_proxy()
    trust = ssl.create_default_context(cafile=str(proxy.ca))
    with (
        tunnel(proxy, "www.facebook.com:443") as sock,
        trust.wrap_socket(sock, server_hostname="www.facebook.com") as tls,
    ):
        try:
            tls.sendall(RAW)
            answer = tls.recv(4096)
        except (ssl.SSLError, ConnectionResetError, TimeoutError):
            answer = b""
    assert answer == b""
    assert not origin.saw(RAW), "the stream reached the origin"
    tcp = [r for r in proxy.records() if r.get("stage") == "tcp"]
    assert [(r["action"], r["host"]) for r in tcp] == [("block", "www.facebook.com")]
