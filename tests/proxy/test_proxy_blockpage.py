"""The block page and its short forms: the right body for the right kind of request."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from socialguard.proxy.blockpage import BlockFormat, BlockNotice, choose_format, render

NOTICE = BlockNotice(
    host="www.facebook.com",
    reason="Individual use of social networking during school hours is prohibited (policy 4.3).",
    reference="K7Q2-9XMD-4TRA",
    time="2026-12-01 10:00 MST",
    district="Example School District",
    rule="staff-social-school-hours",
    category="social",
    who="address 10.20.1.5 (staff)",
    contact="helpdesk@example.k12.mt.us",
    policy_url="https://www.example.k12.mt.us/board/policies/social-networking",
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"sec_fetch_mode": "navigate", "sec_fetch_dest": "document"}, BlockFormat.HTML),
        ({"sec_fetch_dest": "iframe"}, BlockFormat.HTML),
        ({"sec_fetch_dest": "empty", "sec_fetch_mode": "cors", "accept": "*/*"}, BlockFormat.JSON),
        ({"sec_fetch_dest": "empty", "accept": "text/plain"}, BlockFormat.TEXT),
        ({"sec_fetch_dest": "image", "accept": "image/avif,image/webp,*/*"}, BlockFormat.TEXT),
        ({"sec_fetch_dest": "script"}, BlockFormat.TEXT),
        ({"accept": "text/html,application/xhtml+xml;q=0.9"}, BlockFormat.HTML),
        ({"accept": "application/json"}, BlockFormat.JSON),
        ({"accept": "*/*"}, BlockFormat.TEXT),
        ({"accept": "text/html", "upgrade": "websocket"}, BlockFormat.TEXT),
    ],
)
def test_format_fits_the_request(headers: dict[str, str], expected: BlockFormat) -> None:
    assert choose_format(**headers) is expected


def test_page_says_what_why_when_reference_who_and_whom_to_contact() -> None:
    out = render(NOTICE, BlockFormat.HTML)
    page = out.body.decode()
    assert out.status == 403
    assert out.content_type.startswith("text/html")
    for fact in (
        "www.facebook.com",
        "Individual use of social networking during school hours is prohibited",
        "staff-social-school-hours",
        "2026-12-01 10:00 MST",
        "K7Q2-9XMD-4TRA",
        "address 10.20.1.5 (staff)",
        "helpdesk@example.k12.mt.us",
        'href="https://www.example.k12.mt.us/board/policies/social-networking"',
        'name="viewport"',
    ):
        assert fact in page


def test_page_has_no_external_assets() -> None:
    page = render(NOTICE, BlockFormat.HTML).body.decode()
    assert "<script" not in page
    assert "src=" not in page
    assert "<link" not in page


def test_page_escapes_what_came_from_the_wire() -> None:
    hostile = replace(NOTICE, host="<script>alert(1)</script>.example")
    page = render(hostile, BlockFormat.HTML).body.decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;" in page


def test_page_carries_the_bypass_fragment_where_given() -> None:
    with_forms = replace(NOTICE, bypass_html='<form id="emergency"></form>')
    assert '<form id="emergency"></form>' in render(with_forms, BlockFormat.HTML).body.decode()
    assert "<form" not in render(NOTICE, BlockFormat.HTML).body.decode()


def test_non_http_policy_url_is_not_linked() -> None:
    odd = replace(NOTICE, policy_url="javascript:alert(1)")
    assert "javascript:" not in render(odd, BlockFormat.HTML).body.decode()


def test_json_for_scripts() -> None:
    out = render(NOTICE, BlockFormat.JSON)
    assert out.content_type == "application/json"
    body = json.loads(out.body)
    assert body["blocked"] is True
    assert body["reference"] == "K7Q2-9XMD-4TRA"
    assert body["rule"] == "staff-social-school-hours"


def test_text_is_short() -> None:
    out = render(NOTICE, BlockFormat.TEXT)
    text = out.body.decode()
    assert out.content_type.startswith("text/plain")
    assert "K7Q2-9XMD-4TRA" in text
    assert len(text.splitlines()) <= 6


def test_a_service_is_named_on_the_page_in_json_and_in_text() -> None:
    notice = replace(NOTICE, host="static.xx.fbcdn.net", service="Facebook")
    page = render(notice, BlockFormat.HTML).body.decode()
    assert "<h1>Facebook is blocked on the" in page and "<title>Blocked: Facebook</title>" in page
    assert json.loads(render(notice, BlockFormat.JSON).body)["service"] == "Facebook"
    assert "Facebook (static.xx.fbcdn.net)" in render(notice, BlockFormat.TEXT).body.decode()


def test_a_host_of_no_service_is_this_site() -> None:
    assert "<h1>This site is blocked on the" in render(NOTICE, BlockFormat.HTML).body.decode()
