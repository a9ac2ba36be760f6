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
    contact="the district technology office, (406) 555-0100, helpdesk@example.k12.mt.us",
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
    assert "<h1>Facebook is blocked on this network" in page
    assert "<title>Blocked: Facebook — Example School District</title>" in page
    assert json.loads(render(notice, BlockFormat.JSON).body)["service"] == "Facebook"
    assert "Facebook (static.xx.fbcdn.net)" in render(notice, BlockFormat.TEXT).body.decode()


def test_a_host_of_no_service_is_this_site() -> None:
    assert (
        "<h1>This site is blocked on this network" in render(NOTICE, BlockFormat.HTML).body.decode()
    )


def test_page_reads_district_site_why_contact_reference_then_choices_then_details() -> None:
    with_forms = replace(NOTICE, service="Facebook", bypass_html='<form id="choice"></form>')
    page = render(with_forms, BlockFormat.HTML).body.decode()
    order = [
        '<p class="district">Example School District</p>',
        "<h1>Facebook is blocked",
        "www.facebook.com</strong> was not opened",
        "Individual use of social networking",
        'href="tel:4065550100"',
        'href="mailto:helpdesk@example.k12.mt.us"',
        'Quote the reference <span class="ref">K7Q2-9XMD-4TRA</span>',
        '<form id="choice">',
        "<details>",
        "staff-social-school-hours",
    ]
    at = [page.index(s) for s in order]
    assert at == sorted(at), order


def test_jargon_is_only_in_the_collapsed_technical_details() -> None:
    page = render(NOTICE, BlockFormat.HTML).body.decode()
    details = page.index("<details>")
    assert "<details open" not in page
    for jargon in ("staff-social-school-hours", "address 10.20.1.5 (staff)", "<dt>Category"):
        assert page.index(jargon) > details


def test_contact_is_tappable_phone_and_email_links() -> None:
    page = render(NOTICE, BlockFormat.HTML).body.decode()
    assert '<a class="tap" href="tel:4065550100">Call (406) 555-0100</a>' in page
    assert (
        '<a class="tap" href="mailto:helpdesk@example.k12.mt.us">'
        "Email helpdesk@example.k12.mt.us</a>" in page
    )
    assert "Contact the district technology office." in page


def test_a_contact_without_phone_or_email_is_said_in_words() -> None:
    page = render(replace(NOTICE, contact=None), BlockFormat.HTML).body.decode()
    assert "Contact your school&#x27;s administration." in page
    assert "tel:" not in page and "mailto:" not in page


def test_touch_targets_are_44px_and_inputs_16px() -> None:
    """The sizes the stylesheet promises (the screenshots in tests/ui show them laid out)."""
    from socialguard.proxy.pagekit import STYLE

    rules = {
        sel.strip(): body
        for sel, body in (chunk.split("{", 1) for chunk in STYLE.split("}") if "{" in chunk)
    }
    tap = rules["a.tap, button"]
    assert "min-height: 44px" in tap and "min-width: 44px" in tap and "font-size: 1rem" in tap
    assert "font-size: 16px" in rules["textarea"]
    assert "min-height: 44px" in rules["summary"]
