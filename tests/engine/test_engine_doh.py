"""engine/doh.py: DoH by request form, in every spelling, and not what only looks alike."""

from __future__ import annotations

import pytest

from socialguard.engine import Request, is_doh_request

Q = "q80BAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE"  # base64url of a DNS query for example.com A


@pytest.mark.parametrize(
    ("path", "content_type", "accept"),
    [
        ("/dns-query?dns=" + Q, None, None),
        ("/DNS-QUERY", None, None),
        ("/dns%2dquery", None, None),
        ("/dns-query;v=1", None, None),
        ("/q?DNS=" + Q, None, None),
        ("/q?a=1;dns=" + Q, None, None),
        ("/q?%64ns=" + Q, None, None),
        ("/q;dns=" + Q, None, None),
        ("/resolve?name=example.com", None, None),
        ("/Resolve?type=A&NAME=example.com.", None, None),
        ("/q", "application/dns-message", None),
        ("/q", "Application/DNS-JSON; charset=utf-8", None),
        ("/q", "application/dns-udpwireformat", None),
        ("/q", "application/x-dns-message", None),
        ("/q", None, "application/dns-json"),
        ("/q", None, "text/html, application/dns-message;q=0.5"),
    ],
)
def test_doh_is_recognised_in_any_spelling(
    path: str, content_type: str | None, accept: str | None
) -> None:
    request = Request("x.example", "https", "GET", path, None, None, False, content_type, accept)
    assert is_doh_request(request)


@pytest.mark.parametrize(
    ("path", "content_type", "accept"),
    [
        ("/", None, None),
        ("/news/today?id=3", None, "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("/blog/dns-query-explained", None, None),
        ("/lookup?dns=8.8.8.8", None, None),
        ("/lookup?dns=short", None, None),
        ("/search?name=example.com", None, None),
        ("/resolve?name=smith", None, None),
        ("/api", "application/json", "application/json"),
        ("/f", "application/x-www-form-urlencoded", None),
        ("/100%25", None, None),
    ],
)
def test_what_only_looks_like_doh_is_not(
    path: str, content_type: str | None, accept: str | None
) -> None:
    request = Request("x.example", "https", "GET", path, None, None, False, content_type, accept)
    assert not is_doh_request(request)
