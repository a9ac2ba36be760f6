"""IPv6 spellings of a blocked IPv4 address, and network rules at every stage (issue 17, item 6)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import TEST_RULES, curl  # type: ignore[import-not-found]

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
