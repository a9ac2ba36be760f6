"""The block page's forms and their tokens: single use, short-lived, bound to person and
decision."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from socialguard.engine import Action, Basis, Bypass, Decision, Principal
from socialguard.overrides import Limits, SnapshotRefresher, open_store
from socialguard.overrides.sqlite import SqliteStore
from socialguard.proxy.forms import (
    EMERGENCY_PATH,
    REQUEST_PATH,
    BlockPageForms,
    FormRequest,
    is_form_path,
)
from socialguard.proxy.pagekit import Brand

BRAND = Brand("Example School District", "Help desk, (406) 555-0100, help@example.k12.mt.us")
DENVER = ZoneInfo("America/Denver")
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=DENVER).astimezone(UTC)
JDOE = Principal(
    client_ip="10.20.1.5", user="jdoe", device="laptop-17", groups=frozenset({"staff"})
)
URL = "https://www.facebook.com/groups/pta"
LIMITS = Limits(
    group_names=frozenset({"staff"}),
    category_names=frozenset({"social"}),
    grant_max=timedelta(hours=8),
    emergency_minutes=30,
    emergency_per_day=2,
    timezone=DENVER,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    s = open_store(tmp_path / "socialguard.db", clock=clock)
    assert isinstance(s, SqliteStore)
    yield s
    s.close()


@pytest.fixture
def refresher(store: SqliteStore, clock: FakeClock) -> SnapshotRefresher:
    return SnapshotRefresher(store, clock=clock)


@pytest.fixture
def forms(store: SqliteStore, refresher: SnapshotRefresher, clock: FakeClock) -> BlockPageForms:
    return BlockPageForms(
        store, lambda: LIMITS, refresher=refresher, clock=clock, brand=lambda: BRAND
    )


def blocked(
    bypass: frozenset[Bypass] = frozenset({Bypass.GRANT, Bypass.EMERGENCY}),
    principal: Principal = JDOE,
) -> Decision:
    return Decision(
        action=Action.BLOCK,
        basis=Basis.RULE,
        reason="Policy: no social networking in school hours",
        principal=principal,
        policy_version="v1",
        host="www.facebook.com",
        rule_id="staff-social-school-hours",
        category="social",
        matched_domain="facebook.com",
        bypass=bypass,
    )


def tokens(html: str) -> dict[str, str]:
    """action path → token, read from the block page fragment."""
    return dict(re.findall(r'action="([^"]+)".*?name="token" value="([^"]+)"', html))


def post(
    path: str,
    token: str,
    reason: str = "Lockdown notice from my child's school",
    principal: Principal = JDOE,
    host: str = "www.facebook.com",
    **headers: str,
) -> FormRequest:
    return FormRequest(
        method="POST",
        path=path,
        host=host,
        principal=principal,
        body=urlencode({"token": token, "reason": reason}).encode(),
        content_type="application/x-www-form-urlencoded",
        origin=headers.get("origin", "https://www.facebook.com"),
        sec_fetch_site=headers.get("sec_fetch_site", "same-origin"),
    )


def test_form_paths_are_reserved_under_dot_socialguard() -> None:
    assert is_form_path("/.socialguard/emergency?x=1")
    assert not is_form_path("/socialguard/emergency")


@pytest.mark.parametrize(
    ("bypass", "expected"),
    [
        (frozenset({Bypass.GRANT, Bypass.EMERGENCY}), {EMERGENCY_PATH, REQUEST_PATH}),
        (frozenset({Bypass.EMERGENCY}), {EMERGENCY_PATH}),
        (frozenset({Bypass.GRANT}), {REQUEST_PATH}),
        (frozenset(), set()),
    ],
)
def test_links_offer_only_what_the_rule_allows(
    forms: BlockPageForms, bypass: frozenset[Bypass], expected: set[str]
) -> None:
    assert set(tokens(forms.links(blocked(bypass), url=URL, decision_id="d-1"))) == expected


def test_emergency_submit_opens_the_site_and_confirms_until_when(
    forms: BlockPageForms, refresher: SnapshotRefresher, clock: FakeClock
) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    out = forms.handle(post(EMERGENCY_PATH, token))
    page = out.body.decode()
    assert out.status == 200 and "Location" not in out.headers
    assert "<h1>Emergency access until 10:30 MST</h1>" in page  # T0 is 10:00 in Denver
    assert f'<a class="tap" href="{URL}">Continue to {URL}</a>' in page
    assert out.event["outcome"] == "emergency_declared" and out.event["decision_id"] == "d-1"
    # the snapshot was refreshed before answering: the redirect is already allowed
    e = refresher.current.emergency_for(JDOE, "www.facebook.com", {}, clock.now)
    assert e is not None and e.self_declared and e.scope == "device:laptop-17"
    assert e.ends - clock.now == timedelta(minutes=30)
    assert refresher.current.emergency_for(JDOE, "www.tiktok.com", {}, clock.now) is None


def test_access_request_is_filed_for_administration(
    forms: BlockPageForms, store: SqliteStore
) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-2"))[REQUEST_PATH]
    out = forms.handle(post(REQUEST_PATH, token, reason="Update the PTA page"))
    assert out.status == 200
    (req,) = store.list_requests()
    assert (req.who, req.site, req.url, req.reason, req.decision_id) == (
        "user:jdoe",
        "facebook.com",
        URL,
        "Update the PTA page",
        "d-2",
    )
    assert req.id.encode() in out.body


def test_a_replayed_token_is_refused_and_logged(forms: BlockPageForms, store: SqliteStore) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[REQUEST_PATH]
    assert forms.handle(post(REQUEST_PATH, token)).status == 200
    with capture_logs() as logs:
        again = forms.handle(post(REQUEST_PATH, token))
    assert again.status == 403 and again.event["why"] == "replayed"
    assert [(entry["event"], entry["why"]) for entry in logs] == [
        ("form_token_refused", "replayed")
    ]
    assert len(store.list_requests()) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature altered
        lambda t: "x" + t,  # payload altered
        lambda t: t.split(".")[0],  # no signature
        lambda t: "",  # no token
    ],
)
def test_a_forged_token_is_refused(forms: BlockPageForms, store: SqliteStore, tamper) -> None:  # type: ignore[no-untyped-def]
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    out = forms.handle(post(EMERGENCY_PATH, tamper(token)))
    assert out.status == 403 and out.event["why"] == "forged"
    assert store.pending_reviews() == []


def test_a_token_signed_with_another_key_is_forged(
    forms: BlockPageForms, store: SqliteStore, refresher: SnapshotRefresher, clock: FakeClock
) -> None:
    other = BlockPageForms(
        store, lambda: LIMITS, refresher=refresher, clock=clock, secret=b"k" * 32
    )
    token = tokens(other.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    assert forms.handle(post(EMERGENCY_PATH, token)).event["why"] == "forged"


def test_nodes_sharing_a_store_accept_each_others_forms_once(
    tmp_path: Path, store: SqliteStore, clock: FakeClock
) -> None:
    """Two proxy nodes (separate processes in production: separate store handles here) behind a
    load balancer: a form served by one may be posted to the other, but only once in all."""
    other_store = open_store(store.path, clock=clock)
    try:
        node_a = BlockPageForms(store, lambda: LIMITS, clock=clock)
        node_b = BlockPageForms(other_store, lambda: LIMITS, clock=clock)
        token = tokens(node_a.links(blocked(), url=URL, decision_id="d-1"))[REQUEST_PATH]
        assert node_b.handle(post(REQUEST_PATH, token)).status == 200
        again = node_a.handle(post(REQUEST_PATH, token))
        assert again.status == 403 and again.event["why"] == "replayed"
        assert len(store.list_requests()) == 1
    finally:
        other_store.close()


def test_a_token_for_one_form_does_not_open_the_other(forms: BlockPageForms) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[REQUEST_PATH]
    assert forms.handle(post(EMERGENCY_PATH, token)).event["why"] == "forged"


def test_an_expired_token_is_refused(forms: BlockPageForms, clock: FakeClock) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    clock.now += timedelta(minutes=10)
    out = forms.handle(post(EMERGENCY_PATH, token))
    assert out.status == 403 and out.event["why"] == "expired"


def test_a_token_is_bound_to_the_person(forms: BlockPageForms) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    someone_else = Principal(client_ip="10.20.1.99", groups=frozenset({"staff"}))
    out = forms.handle(post(EMERGENCY_PATH, token, principal=someone_else))
    assert out.status == 403 and out.event["why"] == "wrong_person"


def test_a_token_is_bound_to_the_site(forms: BlockPageForms) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    out = forms.handle(
        post(EMERGENCY_PATH, token, host="www.instagram.com", origin="https://www.instagram.com")
    )
    assert out.status == 403 and out.event["why"] == "wrong_site"


@pytest.mark.parametrize(
    "headers",
    [
        {"sec_fetch_site": "cross-site"},
        {"sec_fetch_site": "same-site"},
        {"origin": "https://evil.example"},
    ],
)
def test_cross_site_submissions_are_refused(
    forms: BlockPageForms, store: SqliteStore, headers: dict[str, str]
) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    out = forms.handle(post(EMERGENCY_PATH, token, **headers))
    assert out.status == 403 and out.event["why"] == "cross_site"
    assert store.pending_reviews() == []


def test_an_empty_reason_is_asked_again_without_spending_the_token(forms: BlockPageForms) -> None:
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    assert forms.handle(post(EMERGENCY_PATH, token, reason="   ")).status == 400
    assert forms.handle(post(EMERGENCY_PATH, token)).status == 200


def test_past_the_daily_limit_the_form_says_so(
    forms: BlockPageForms, store: SqliteStore, clock: FakeClock
) -> None:
    # three block pages loaded before any was used: the third form is refused when it comes back
    pages = [tokens(forms.links(blocked(), url=URL, decision_id="d-1")) for _ in range(3)]
    statuses = []
    for page in pages:
        out = forms.handle(post(EMERGENCY_PATH, page[EMERGENCY_PATH]))
        statuses.append(out.status)
    assert statuses == [200, 200, 429]
    assert b"all 2 emergency accesses allowed today" in out.body
    assert b"starts again at midnight (2 Dec, 00:00 MST)" in out.body
    assert len(store.pending_reviews()) == 2
    clock.now += timedelta(days=1)  # the next local day
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
    assert forms.handle(post(EMERGENCY_PATH, token)).status == 200


def test_a_used_up_allowance_is_not_offered_and_says_when_it_resets(
    forms: BlockPageForms, clock: FakeClock
) -> None:
    for _ in range(2):
        token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
        assert forms.handle(post(EMERGENCY_PATH, token)).status == 200
    fragment = forms.links(blocked(), url=URL, decision_id="d-1")
    assert set(tokens(fragment)) == {REQUEST_PATH}  # asking administration is still offered
    assert "emergency accesses are used up (your allowance)" in fragment
    assert "They start again at midnight (2 Dec, 00:00 MST)" in fragment


def test_requests_used_up_are_not_offered_either(forms: BlockPageForms) -> None:
    for _ in range(LIMITS.requests_per_day):
        token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[REQUEST_PATH]
        assert forms.handle(post(REQUEST_PATH, token)).status == 200
    fragment = forms.links(blocked(), url=URL, decision_id="d-1")
    assert set(tokens(fragment)) == {EMERGENCY_PATH}
    assert "requests for access are used up" in fragment


@pytest.mark.parametrize("outcome", ["sent", "limit", "expired"])
def test_every_follow_up_page_names_the_district_contact_and_reference(
    forms: BlockPageForms, outcome: str
) -> None:
    if outcome == "expired":
        out = forms.handle(post(REQUEST_PATH, "forged.token"))
    else:
        n = 1 if outcome == "sent" else LIMITS.requests_per_day + 1
        pages = [tokens(forms.links(blocked(), url=URL, decision_id="d-9")) for _ in range(n)]
        for page in pages:
            out = forms.handle(post(REQUEST_PATH, page[REQUEST_PATH]))
    page_html = out.body.decode()
    assert '<p class="district">Example School District</p>' in page_html
    assert (
        'href="tel:4065550100"' in page_html and 'href="mailto:help@example.k12.mt.us"' in page_html
    )
    reference = "d-9" if outcome != "expired" else out.event["decision_id"]
    assert f'<span class="ref">{reference}</span>' in page_html
    assert reference and out.event["decision_id"] == reference


def test_the_emergency_form_is_a_declaration_after_the_request_form(forms: BlockPageForms) -> None:
    fragment = forms.links(blocked(), url=URL, decision_id="d-1")
    assert fragment.index(REQUEST_PATH) < fragment.index(EMERGENCY_PATH)
    assert '<button type="submit">I declare an emergency</button>' in fragment
    assert "This is an emergency" not in fragment
    assert "for 30 minutes in an emergency (at most twice a day)" in fragment


def test_get_is_not_a_submission(forms: BlockPageForms) -> None:
    out = forms.handle(
        FormRequest(method="GET", path=EMERGENCY_PATH, host="www.facebook.com", principal=JDOE)
    )
    assert out.status == 405


def test_unknown_form_path_is_not_found(forms: BlockPageForms) -> None:
    out = forms.handle(
        FormRequest(
            method="POST", path="/.socialguard/other", host="www.facebook.com", principal=JDOE
        )
    )
    assert out.status == 404


def test_pages_cannot_be_framed_or_cached(forms: BlockPageForms) -> None:
    out = forms.handle(
        FormRequest(method="GET", path=EMERGENCY_PATH, host="www.facebook.com", principal=JDOE)
    )
    assert out.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in out.headers["Content-Security-Policy"]
    assert out.headers["Cache-Control"] == "no-store"


def test_the_url_and_reason_are_escaped_in_html(forms: BlockPageForms) -> None:
    evil = 'https://www.facebook.com/"><script>alert(1)</script>'
    token = tokens(forms.links(blocked(), url=evil, decision_id="d-1"))[EMERGENCY_PATH]
    out = forms.handle(post(EMERGENCY_PATH, token))
    assert b"<script>" not in out.body


def test_an_unknown_form_path_is_capped_in_the_record(forms: BlockPageForms) -> None:
    res = forms.handle(
        FormRequest(method="POST", path="/.socialguard/" + "x" * 5000, host="h", principal=JDOE)
    )
    assert res.status == 404
    assert len(res.event["form"]) == 256
    assert res.event["masked"] == ["form"]


def test_a_form_whose_daily_allowance_is_zero_is_not_offered(
    store: SqliteStore, clock: FakeClock
) -> None:
    from dataclasses import replace

    limits = replace(LIMITS, requests_per_day=0, emergency_per_day_unidentified=0)
    forms = BlockPageForms(store, lambda: limits, clock=clock)
    anonymous = Principal(client_ip="10.20.1.9", groups=frozenset({"staff"}))
    assert set(tokens(forms.links(blocked(), url=URL, decision_id="d-1"))) == {EMERGENCY_PATH}
    assert tokens(forms.links(blocked(principal=anonymous), url=URL, decision_id="d-2")) == {}


def test_the_request_page_says_the_request_opens_the_whole_service(
    store: SqliteStore, refresher: SnapshotRefresher, clock: FakeClock
) -> None:
    from dataclasses import replace

    limits = replace(LIMITS, service_label=lambda site: "Facebook" if "facebook" in site else None)
    forms = BlockPageForms(store, lambda: limits, refresher=refresher, clock=clock)
    token = tokens(forms.links(blocked(), url=URL, decision_id="d-2"))[REQUEST_PATH]
    out = forms.handle(post(REQUEST_PATH, token, reason="Update the PTA page"))
    assert out.status == 200
    assert b"for facebook.com (all of Facebook) was sent to administration" in out.body


# -- where an emergency or a request applies: the person, or this device -----------------------

RADIUS_JDOE = Principal(
    client_ip="10.20.1.5", user="jdoe", groups=frozenset({"staff"}), source="radius"
)
BY_ADDRESS = Principal(client_ip="10.20.1.9", groups=frozenset({"staff"}))


def test_a_person_named_by_an_identity_source_gets_the_emergency_wherever_identified(
    forms: BlockPageForms, refresher: SnapshotRefresher, clock: FakeClock
) -> None:
    fragment = forms.links(blocked(principal=RADIUS_JDOE), url=URL, decision_id="d-1")
    assert "wherever the network identifies you" in fragment and "this device" not in fragment
    out = forms.handle(
        post(EMERGENCY_PATH, tokens(fragment)[EMERGENCY_PATH], principal=RADIUS_JDOE)
    )
    page = out.body.decode()
    assert out.status == 200
    assert "open for you wherever the network identifies you" in page
    assert "this device" not in page
    # and it is true: the same person on another address the source binds to them
    roaming = Principal(client_ip="10.20.7.70", user="jdoe", source="radius")
    e = refresher.current.emergency_for(roaming, "www.facebook.com", {}, clock.now)
    assert e is not None and e.scope == "user:jdoe"


@pytest.mark.parametrize("who", [JDOE, BY_ADDRESS])
def test_a_device_or_an_address_gets_the_emergency_on_this_device(
    forms: BlockPageForms, refresher: SnapshotRefresher, clock: FakeClock, who: Principal
) -> None:
    fragment = forms.links(blocked(principal=who), url=URL, decision_id="d-1")
    assert "on this device" in fragment and "wherever" not in fragment
    out = forms.handle(post(EMERGENCY_PATH, tokens(fragment)[EMERGENCY_PATH], principal=who))
    page = out.body.decode()
    assert "open on this device until" in page and "wherever" not in page
    other = Principal(client_ip="10.20.7.70", user=who.user, source="radius")
    assert refresher.current.emergency_for(other, "www.facebook.com", {}, clock.now) is None


@pytest.mark.parametrize(
    ("who", "where"),
    [
        (RADIUS_JDOE, "wherever the network identifies you"),
        (BY_ADDRESS, "on this device"),
    ],
)
def test_the_request_page_says_where_an_approval_applies(
    forms: BlockPageForms, who: Principal, where: str
) -> None:
    fragment = forms.links(blocked(principal=who), url=URL, decision_id="d-1")
    out = forms.handle(post(REQUEST_PATH, tokens(fragment)[REQUEST_PATH], principal=who))
    assert out.status == 200
    page = out.body.decode()
    assert where in page
    assert ("this device" in page) is (where == "on this device")


# -- the block page counts allowances in memory (the refresher's snapshot) ---------------------


class _NoStore:
    """A store the block page must not touch: building it runs on mitmproxy's event loop."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the block page read the store ({name})")


def test_the_block_page_counts_a_used_up_allowance_from_memory(
    forms: BlockPageForms,
) -> None:
    for _ in range(LIMITS.emergency_per_day):
        token = tokens(forms.links(blocked(), url=URL, decision_id="d-1"))[EMERGENCY_PATH]
        assert forms.handle(post(EMERGENCY_PATH, token)).status == 200
    forms.store = _NoStore()  # type: ignore[assignment]
    fragment = forms.links(blocked(), url=URL, decision_id="d-1")
    assert set(tokens(fragment)) == {REQUEST_PATH}  # no emergency form the server would refuse
    assert "They start again at midnight (2 Dec, 00:00 MST)" in fragment
    other = Principal(client_ip="10.20.1.6", user="bwong", groups=frozenset({"staff"}))
    assert set(tokens(forms.links(blocked(principal=other), url=URL, decision_id="d-2"))) == {
        EMERGENCY_PATH,
        REQUEST_PATH,
    }


DECLARE_ELSEWHERE = """
import sys
from datetime import UTC, datetime, timedelta
from socialguard.engine.limits import Allowance
from socialguard.overrides import Actor, open_store
store = open_store(sys.argv[1])
for _ in range(int(sys.argv[2])):
    store.declare_self_emergency(
        scope="device:laptop-17", person="user:jdoe", site="facebook.com", url=sys.argv[3],
        reason="another node's block page", actor=Actor(by="user:jdoe", source="10.20.1.5"),
        minutes=30, per_day=int(sys.argv[2]), day_start=datetime.now(UTC) - timedelta(days=1),
        allowances=(Allowance("user:jdoe", int(sys.argv[2]), "emergency_per_day"),),
    )
store.close()
"""


def test_uses_in_another_process_are_counted_on_the_next_refresh(
    forms: BlockPageForms, store: SqliteStore, refresher: SnapshotRefresher, clock: FakeClock
) -> None:
    clock.now = datetime.now(UTC)  # the other process's store keeps real time
    assert EMERGENCY_PATH in tokens(forms.links(blocked(), url=URL, decision_id="d-1"))
    done = subprocess.run(
        [sys.executable, "-c", DECLARE_ELSEWHERE, str(store.path), str(LIMITS.emergency_per_day),
         URL],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert refresher.refresh_if_needed()  # one poll: the change counter moved
    forms.store = _NoStore()  # type: ignore[assignment]
    fragment = forms.links(blocked(), url=URL, decision_id="d-1")
    assert set(tokens(fragment)) == {REQUEST_PATH}
    assert "emergency accesses are used up (your allowance)" in fragment
    assert "They start again at midnight" in fragment
