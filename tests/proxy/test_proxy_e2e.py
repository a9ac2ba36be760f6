"""The real proxy on loopback with real curl and httpx: what a staff device behind it meets."""

from __future__ import annotations

import ssl
import subprocess
from typing import Any

import httpx
import pytest

from conftest import EVENING, SCHOOL_HOURS, TEST_RULES, curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

HTML = ("-H", "Accept: text/html")


def test_blocked_social_url_over_plain_http_gets_the_block_page(start_proxy: Any) -> None:
    proxy = start_proxy()
    r = curl(proxy, "http://www.facebook.com/", *HTML)
    assert r.status == 403
    assert "This site is blocked" in r.body
    assert "staff-social-school-hours" in r.body
    ref = r.headers["x-socialguard-reference"]
    assert ref in r.body
    record = proxy.record(ref)
    assert (record["action"], record["rule"], record["host"]) == (
        "block", "staff-social-school-hours", "www.facebook.com",
    )  # fmt: skip
    assert proxy.steer.connected == [], "a blocked request must not reach the origin"


def test_blocked_social_url_over_https_gets_the_block_page(start_proxy: Any) -> None:
    proxy = start_proxy()
    r = curl(proxy, "https://www.facebook.com/some/page", *HTML)
    assert r.status == 403
    assert "www.facebook.com" in r.body
    assert proxy.record(r.headers["x-socialguard-reference"])["stage"] == "request"
    stages = [
        (x["stage"], x.get("verdict")) for x in proxy.records() if x.get("type") == "decision"
    ]
    assert ("connection", "inspect") in stages


def test_allowed_non_social_https_is_passed_through_undecrypted(
    start_proxy: Any, upstreams: Any
) -> None:
    proxy = start_proxy()
    # curl trusts only the upstream's own self-signed certificate: success means it saw that
    # certificate, not one minted by the proxy's CA.
    r = curl(proxy, "https://www.example.org/hello", cacert=upstreams.cert)
    assert r.status == 200
    assert r.body == "upstream ok host=www.example.org path=/hello\n"
    passes = [x for x in proxy.records() if x.get("verdict") == "pass"]
    assert [x["host"] for x in passes] == ["www.example.org"]
    assert not [x for x in proxy.records() if x.get("stage") == "request"], "nothing decrypted"


def test_allowed_social_url_out_of_school_hours_reaches_the_upstream(start_proxy: Any) -> None:
    proxy = start_proxy(at=EVENING)
    r = curl(proxy, "https://www.facebook.com/groups/x", "-k")
    assert r.status == 200
    assert r.body.startswith("upstream ok host=www.facebook.com")


def test_the_clock_moves_the_decision(start_proxy: Any) -> None:
    proxy = start_proxy(at=EVENING)
    assert curl(proxy, "http://www.tiktok.com/").status == 200
    proxy.clock.set(SCHOOL_HOURS)
    assert curl(proxy, "http://www.tiktok.com/").status == 403


def test_xhr_gets_json_and_images_get_text(start_proxy: Any) -> None:
    proxy = start_proxy()
    xhr = curl(proxy, "http://www.facebook.com/api", "-H", "Sec-Fetch-Dest: empty",
               "-H", "Sec-Fetch-Mode: cors")  # fmt: skip
    assert xhr.headers["content-type"] == "application/json"
    img = curl(proxy, "http://www.facebook.com/a.png", "-H", "Sec-Fetch-Dest: image")
    assert img.headers["content-type"].startswith("text/plain")


class _H2First(ssl.SSLContext):
    """httpx offers ALPN "http/1.1, h2" and mitmproxy honours the client's order; browsers put h2
    first, so this client does too."""

    def set_alpn_protocols(self, protocols: Any) -> None:
        super().set_alpn_protocols(sorted(protocols, key=lambda p: p != "h2"))


def _h2_client(proxy: Any) -> httpx.Client:
    ctx = _H2First(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(proxy.ca))
    return httpx.Client(proxy=proxy.url, verify=ctx, http2=True, trust_env=False, timeout=15)


def test_fronting_approved_sni_with_blocked_host_is_blocked(start_proxy: Any) -> None:
    proxy = start_proxy()
    with _h2_client(proxy) as client:
        approved = client.get("https://www.facebook.com/ExampleSchoolDistrict")
        assert approved.status_code == 200
        assert approved.http_version == "HTTP/2"
        fronted = client.get(
            "https://www.facebook.com/ExampleSchoolDistrict",
            headers={"Host": "www.instagram.com", "Accept": "application/json"},
        )
    assert fronted.status_code == 403
    record = proxy.record(fronted.headers["x-socialguard-reference"])
    assert record["host"] == "www.instagram.com"
    assert record["sni"] == "www.facebook.com"
    assert set(record["hosts"]) == {"www.instagram.com", "www.facebook.com"}


def test_fronting_blocked_sni_with_approved_host_is_blocked(start_proxy: Any) -> None:
    proxy = start_proxy()
    with _h2_client(proxy) as client:
        fronted = client.get(
            "https://www.instagram.com/ExampleSchoolDistrict",
            headers={"Host": "www.facebook.com", "Accept": "application/json"},
        )
    assert fronted.status_code == 403
    record = proxy.record(fronted.headers["x-socialguard-reference"])
    assert record["rule"] == "staff-social-school-hours"
    assert record["host"] == "www.instagram.com"


RESET_RULES = TEST_RULES.replace(
    "rules:\n",
    "blocked_connections: reset\nrules:\n  - id: never-tiktok\n"
    "    description: Not on this network\n"
    "    who: [staff]\n    what:\n      domains: [tiktok.com]\n    action: block\n",
)


def test_refused_at_tls_without_contacting_the_origin(start_proxy: Any) -> None:
    proxy = start_proxy(rules_text=RESET_RULES)
    res = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--noproxy", "", "-x", proxy.url, "--cacert",
         str(proxy.ca), "https://www.tiktok.com/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode != 0, "the TLS connection must not complete"
    assert proxy.steer.connected == [], "the origin must never be contacted"
    refused = [r for r in proxy.records() if r.get("verdict") == "block"]
    assert [(r["host"], r["rule"]) for r in refused] == [("www.tiktok.com", "never-tiktok")]


def test_websocket_upgrade_is_decided_as_a_request(start_proxy: Any) -> None:
    proxy = start_proxy()
    r = curl(
        proxy, "http://www.facebook.com/chat",
        "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
        "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )  # fmt: skip
    assert r.status == 403
    assert r.headers["content-type"].startswith("text/plain")
    assert proxy.record(r.headers["x-socialguard-reference"])["websocket"] is True
