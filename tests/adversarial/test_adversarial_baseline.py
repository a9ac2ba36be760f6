"""The suite's footing: the recording origin sees what the proxy forwards, and nothing it blocks.

If these fail, every other adversarial case would prove nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e


def test_a_destination_no_rule_concerns_is_passed_through_to_the_origin(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    # Passed through, not decrypted: the client meets the origin's own certificate.
    res = curl(proxy, "https://www.example.org/hello?x=1", cacert=origin.cert)
    assert res.status == 200
    assert "origin saw GET /hello?x=1" in res.body
    [conn] = [c for c in origin.connections if c.requests]
    assert conn.tls and conn.sni == "www.example.org"
    assert conn.requests[0].startswith(b"GET /hello?x=1 HTTP/1.1")


def test_a_blocked_https_request_never_reaches_the_origin(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    res = curl(proxy, "https://www.facebook.com/secret-path", "-H", "Accept: text/html")
    assert res.status == 403
    assert not origin.saw(b"secret-path")
    blocked = [
        r
        for r in proxy.records()
        if r.get("action") == "block" and r.get("host") == "www.facebook.com"
    ]
    assert blocked, "the block is in the decision log"


def test_a_plain_http_request_reaches_the_origin_as_sent(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    res = curl(proxy, "http://www.example.org/plain")
    assert res.status == 200
    assert origin.saw(b"GET /plain HTTP/1.1\r\n")
