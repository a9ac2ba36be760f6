"""A rule written with an internationalised name meets the name browsers put on the wire."""

from __future__ import annotations

from typing import Any

from conftest import TEST_RULES, curl  # type: ignore[import-not-found]

RULES = TEST_RULES.replace(
    "domains: [facebook.com, instagram.com, tiktok.com]",
    "domains: [facebook.com, instagram.com, tiktok.com, faß.de]",
)


def test_a_rule_for_an_eszett_name_blocks_what_the_browser_sends(start_proxy: Any) -> None:
    """`faß.de` in the rules is `xn--fa-hia.de` on the wire (UTS #46, as browsers and curl
    encode it); Python's IDNA 2003 codec had made the rule about `fass.de`, another site.

    mitmproxy 12.3.1 itself refuses this name in a request target or CONNECT (400) and drops it
    from an SNI, because its own host check decodes with that same IDNA 2003 codec; the name
    reaches socialguard in the Host header, as a transparent-mode plain HTTP request carries it.
    """
    proxy = start_proxy(rules_text=RULES)
    # a documentation address (the harness steers every upstream to loopback), not the gateway
    r = curl(
        proxy, "http://198.51.100.7/wall", "-H", "Host: xn--fa-hia.de", "-H", "Accept: text/html"
    )
    assert r.status == 403, r.body
    assert "upstream ok" not in r.body
    (rec,) = [x for x in proxy.records() if x.get("host") == "xn--fa-hia.de"]
    assert (rec["action"], rec["rule"], rec["category"]) == (
        "block",
        "staff-social-school-hours",
        "social",
    )
    other = curl(proxy, "http://fass.de/", "-H", "Accept: text/html")  # a different site
    assert other.status == 200 and "upstream ok host=fass.de" in other.body
