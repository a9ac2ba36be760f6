"""The block page's answer card: the latest request per person and site, escaped, in local time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from socialguard.engine.model import Action, Basis, Decision, Principal
from socialguard.overrides import Actor
from socialguard.overrides.answers import RequestAnswer, RequestAnswers
from socialguard.overrides.refresher import SnapshotRefresher
from socialguard.overrides.sqlite import SqliteStore
from socialguard.proxy.request_status import answer_for, answer_html

DENVER = ZoneInfo("America/Denver")
NOW = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # 10:00 MST


def decision(
    ip: str = "10.0.0.5", user: str | None = None, host: str = "www.facebook.com"
) -> Decision:
    return Decision(
        action=Action.BLOCK,
        basis=Basis.RULE,
        reason="r",
        principal=Principal(client_ip=ip, user=user),
        policy_version="v",
        host=host,
        matched_domain="facebook.com",
    )


def req(
    rid: str, who: str = "ip:10.0.0.5", site: str = "facebook.com", **kw: object
) -> RequestAnswer:
    return RequestAnswer(rid, who, site, kw.pop("status", "pending"), kw.pop("filed", NOW), **kw)  # type: ignore[arg-type]


def test_the_latest_request_of_that_person_for_that_site() -> None:
    answers = RequestAnswers.build(
        [req("r-old", filed=NOW - timedelta(hours=2)), req("r-new"), req("r-b", who="ip:10.0.0.6")]
    )
    assert answer_for(answers, decision()).id == "r-new"  # type: ignore[union-attr]
    assert answer_for(answers, decision(ip="10.0.0.7")) is None
    # identified: the user's own, never the address's
    assert answer_for(answers, decision(user="jdoe")) is None


def test_of_two_filed_at_one_instant_the_later_filed_is_the_latest(tmp_path: Path) -> None:
    """A clock that does not move between two requests (a frozen test clock, a coarse one) gives
    them the same time: the store's order decides, not the random ids."""
    store = SqliteStore(tmp_path / "s.db", clock=lambda: NOW)
    try:
        ids = []
        for n in range(6):
            filed = store.file_request(
                who="ip:10.0.0.5", site="facebook.com", url="https://www.facebook.com/",
                rule_id="x", decision_id=None, reason=f"r{n}", client_ip="10.0.0.5",
                actor=Actor("ip:10.0.0.5", "10.0.0.5"),
            )  # fmt: skip
            ids.append(filed.id)
            answers = RequestAnswers.build(store.recent_answers(NOW - timedelta(days=1)))
            assert answer_for(answers, decision()).id == ids[-1]  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_request_for_the_domain_answers_on_its_hosts() -> None:
    answers = RequestAnswers.build([req("r-1", site="www.facebook.com")])
    assert answer_for(answers, decision(host="www.facebook.com")) is not None


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (req("r-1"), "You asked for access at 10:00 MST"),
        (req("r-1", status="denied", note="No <script>"), "was denied: No &lt;script&gt;"),
        (
            req("r-1", status="approved", ends=NOW + timedelta(hours=4)),
            "was approved until 14:00 MST. This page still appeared",
        ),
        (req("r-1", status="approved", ends=NOW - timedelta(minutes=1)), "that access has ended"),
        (
            req("r-1", status="approved", ends=NOW + timedelta(hours=1), revoked=True),
            "that access was withdrawn",
        ),
        (req("r-1", filed=NOW - timedelta(days=1)), "10:00 MST on 30 Nov"),
    ],
)
def test_the_card_says(answer: RequestAnswer, text: str) -> None:
    assert text in answer_html(answer, now=NOW, zone=DENVER)


def test_the_refresher_carries_the_answers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        r = store.file_request(
            who="ip:10.0.0.5", site="facebook.com", url="https://www.facebook.com/",
            rule_id="x", decision_id=None, reason="PTA", client_ip="10.0.0.5",
            actor=Actor("ip:10.0.0.5", "10.0.0.5"),
        )  # fmt: skip
        refresher = SnapshotRefresher(store)
        assert refresher.answers.latest("ip:10.0.0.5", "facebook.com").status == "pending"  # type: ignore[union-attr]
        store.deny_request(r.id, "Not now", Actor("it", "here"))
        assert refresher.refresh_if_needed()
        got = refresher.answers.latest("ip:10.0.0.5", "facebook.com")
        assert (got.status, got.note) == ("denied", "Not now")  # type: ignore[union-attr]
        assert "0005_access_requests_by_created" in store.migrations()
    finally:
        store.close()
