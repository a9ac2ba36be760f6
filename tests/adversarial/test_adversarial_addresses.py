"""IPv6 spellings of a blocked IPv4 address, and network rules at every stage (issue 17, item 6)."""

from __future__ import annotations

import html
import re
import ssl
import time
from typing import Any

import pytest

from conftest import TEST_RULES, curl, tunnel  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

NETWORK_RULES = TEST_RULES.replace(
    "    domains: [facebook.com, instagram.com, tiktok.com]\n",
    "    domains: [facebook.com, instagram.com, tiktok.com]\n    networks: [203.0.113.0/24]\n",
)


@pytest.mark.parametrize(
    "spelling",
    ["203.0.113.7", "[::ffff:203.0.113.7]", "[64:ff9b::203.0.113.7]", "[::203.0.113.7]",
     "[64:ff9b::cb00:7107]", "3405803783"],
)  # fmt: skip
def test_every_spelling_of_a_blocked_address_is_blocked(
    start_proxy: Any, origin: Any, spelling: str
) -> None:
    proxy = start_proxy(NETWORK_RULES)
    res = curl(proxy, f"http://{spelling}/feed", "-H", "Accept: text/html")
    assert res.status == 403
    assert not origin.saw(b"/feed")
    [record] = [r for r in proxy.records() if r.get("type") == "decision"]
    assert (record["action"], record["category"], record["host"]) == (
        "block",
        "social",
        "203.0.113.7",
    )


def test_an_emergency_declared_on_a_network_block_lifts_it(start_proxy: Any, origin: Any) -> None:
    """The block page's emergency form said "granted" and the address stayed blocked: the
    emergency's site was the network (`203.0.113.0/24`), which matched no host."""
    proxy = start_proxy(NETWORK_RULES)
    page = curl(proxy, "http://203.0.113.7/feed", "-H", "Accept: text/html")
    assert page.status == 403
    token = re.search(r'action="/.socialguard/emergency".*?name="token" value="([^"]+)"', page.body)
    assert token, "the block page offers the emergency form"
    declared = curl(
        proxy, "http://203.0.113.7/.socialguard/emergency",
        "-H", "Origin: http://203.0.113.7", "-H", "Accept: text/html",
        "--data-urlencode", f"token={html.unescape(token.group(1))}",
        "--data-urlencode", "reason=Lockdown notice",
    )  # fmt: skip
    assert declared.status in (200, 303), declared.body[:300]
    assert not origin.saw(b"/feed")
    for _ in range(100):  # bounded: the snapshot refreshes within a second
        res = curl(proxy, "http://203.0.113.7/feed", "-H", "Accept: text/html")
        if res.status == 200:
            break
        time.sleep(0.1)
    assert res.status == 200, "the emergency lifted the block"
    assert origin.saw(b"GET /feed HTTP/1.1")
    lifted = [r for r in proxy.records() if r.get("basis") == "emergency"]
    assert lifted and lifted[-1]["host"] == "203.0.113.7"


def test_a_blocked_network_is_decided_at_the_connection_stage(
    start_proxy: Any, origin: Any
) -> None:
    """CONNECT to a blocked address with a harmless SNI: never passed through on the SNI."""
    proxy = start_proxy(NETWORK_RULES)
    trust = ssl.create_default_context(cafile=str(proxy.ca))
    with (
        tunnel(proxy, "203.0.113.7:443") as sock,
        trust.wrap_socket(sock, server_hostname="www.example.org") as tls,
    ):
        tls.sendall(b"GET /feed HTTP/1.1\r\nHost: www.example.org\r\nAccept: text/html\r\n\r\n")
        answer = tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert not origin.saw(b"/feed")
    [connection] = [r for r in proxy.records() if r.get("stage") == "connection"]
    assert (connection["verdict"], connection["category"]) == ("inspect", "social")
    assert connection["action"] == "inspect"  # a connection's outcome is its verdict (issue 18)
