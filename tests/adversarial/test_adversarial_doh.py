"""Issue 17, item 7: a `doh: true` rule catches DNS-over-HTTPS however the request spells it.

RFC 8484 requests (`/dns-query`, `?dns=`, `application/dns-message`) and JSON DoH (`/resolve?name=`,
`application/dns-json`), in any case, percent-encoded, with `;` as well as `&` between parameters,
marked by Content-Type or Accept. Ordinary pages that merely look alike pass. Each case asserts on
what reached the recording origin and on the decision log.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from raw_requests import get, raw_https  # type: ignore[import-not-found]

from conftest import EVENING, TEST_RULES  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

HOST = "www.example.org"
NO_DOH = TEST_RULES.replace(
    "rules:\n",
    "rules:\n"
    "  - id: no-doh\n"
    "    description: DNS over HTTPS hides destinations from the filter\n"
    "    who: [staff]\n"
    "    what:\n"
    "      doh: true\n"
    "    action: block\n",
    1,
)
# a real DNS query for example.com A, as RFC 8484 carries it
QUERY = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
DNS_PARAM = base64.urlsafe_b64encode(QUERY).rstrip(b"=").decode()


def _post(target: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


DOH_REQUESTS = {
    "path in capitals": get("/DNS-QUERY", HOST),
    "path escaped": get("/dns%2Dquery", HOST),
    "parameter in capitals": get("/query?DNS=" + DNS_PARAM, HOST),
    "parameter after ;": get("/query?x=1;dns=" + DNS_PARAM, HOST),
    "parameter escaped": get("/query?%64ns=" + DNS_PARAM, HOST),
    "parameter on the path": get("/query;dns=" + DNS_PARAM, HOST),
    "json by path and name": get("/resolve?name=example.com&type=A", HOST),
    "json by accept": get("/q?name=example.com", HOST, "Accept: application/dns-json"),
    "message by accept": get("/q", HOST, "Accept: application/dns-message"),
    "accept among others": get("/q", HOST, "Accept: text/plain, Application/DNS-Message;q=0.9"),
    "post, content type in capitals": _post("/q", "Application/DNS-Message", QUERY),
    "post, old draft's type": _post("/q", "application/dns-udpwireformat", QUERY),
    "post to the path, other type": _post("/dns-query", "application/octet-stream", QUERY),
    "post to the path in capitals": _post("/Dns-Query", "text/plain", QUERY),
}
ORDINARY_REQUESTS = {
    "a page": get("/news/today?id=3", HOST),
    "a DNS article": get("/blog/dns-query-explained", HOST),
    "a dns parameter naming a server": get("/lookup?dns=8.8.8.8", HOST),
    "a name parameter elsewhere": get("/search?name=smith&type=person", HOST),
    "a form post": _post("/form", "application/x-www-form-urlencoded", b"dns=1&name=x"),
    "json": _post("/api", "application/json", b'{"name": "example.com"}'),
}


@pytest.mark.parametrize("name", DOH_REQUESTS)
def test_dns_over_https_in_any_spelling_is_blocked(
    start_proxy: Any, origin: Any, name: str
) -> None:
    proxy = start_proxy(NO_DOH, at=EVENING)
    answer = raw_https(proxy, HOST, DOH_REQUESTS[name])
    assert answer.status == 403, answer.head
    assert not any(c.requests for c in origin.connections), "the query reached the origin"
    records = [r for r in proxy.records() if r.get("stage") == "request" and r["host"] == HOST]
    assert [(r["action"], r["rule"]) for r in records] == [("block", "no-doh")]


@pytest.mark.parametrize("name", ORDINARY_REQUESTS)
def test_ordinary_requests_that_look_alike_pass(start_proxy: Any, origin: Any, name: str) -> None:
    proxy = start_proxy(NO_DOH, at=EVENING)
    answer = raw_https(proxy, HOST, ORDINARY_REQUESTS[name])
    assert answer.status == 200, answer.head
    assert sum(len(c.requests) for c in origin.connections) == 1
    records = [r for r in proxy.records() if r.get("stage") == "request" and r["host"] == HOST]
    assert [r["action"] for r in records] == ["allow"]
