"""The outbox and its worker on a real store file and a real SMTP server: once per recipient with
several workers, a restart resumes, ending grants announced once, bad configuration refused."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import SMTP_PASSWORD, SMTP_USER, SmtpServer
from socialguard.engine.notifications import Notice, NotificationSettings, NotificationsSpec, route
from socialguard.errors import PolicyError
from socialguard.notify import Notifier, backoff, describe, slack_payload, teams_payload
from socialguard.overrides import Actor, open_store
from socialguard.overrides.outbox import SqliteOutbox
from socialguard.policy import load_policy

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
STAFF = Actor("user:jdoe", "10.1.2.3")
ADMIN = Actor("supt.garcia", "gateway:pts/0")


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at
        self.lock = threading.Lock()

    def now(self) -> datetime:
        with self.lock:
            return self.at

    def advance(self, by: timedelta) -> None:
        with self.lock:
            self.at += by


def write_rules(tmp_path: Path, smtp: SmtpServer | None, notifications: str) -> Path:
    (tmp_path / "pw").write_text(SMTP_PASSWORD + "\n")
    relay = (
        f"  email:\n    host: 127.0.0.1\n    port: {smtp.port}\n    username: {SMTP_USER}\n"
        f"    password_file: pw\n    ca_file: {smtp.cert}\n    from: sg@school.test\n"
        if smtp
        else ""
    )
    path = tmp_path / "rules.yaml"
    path.write_text(
        "district:\n  name: Test District\n  timezone: America/Denver\n"
        "groups:\n  school-a:\n    include: [school-a-staff]\n"
        "  school-a-staff:\n    networks: [10.1.0.0/16]\n"
        "  school-b-staff:\n    networks: [10.2.0.0/16]\n"
        "notifications:\n" + relay + notifications
    )
    return path


RECIPIENTS = """\
  people: {jdoe: jdoe@school.test}
  ending_lead: 15m
  recipients:
    - when: [request_filed, emergency_declared, grant_ending]
      groups: [school-a]
      email: [principal.a@school.test, Principal.A@school.test]
    - when: [request_filed]
      groups: [school-b-staff]
      email: [principal.b@school.test]
"""


def file(store: Any, n: int, groups: tuple[str, ...] = ("school-a-staff",)) -> str:
    return str(
        store.file_request(
            who="user:jdoe", site="facebook.com", url=f"https://www.facebook.com/{n}",
            rule_id="r", decision_id=f"d{n}", reason=f"reason {n}", client_ip="10.1.2.3",
            actor=STAFF, groups=groups,
        ).id
    )  # fmt: skip


# -- who is told ------------------------------------------------------------------------------


def test_a_school_group_hears_of_its_member_groups_requests_and_the_other_school_does_not(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    policy = load_policy(write_rules(tmp_path, smtp, RECIPIENTS))
    notice = Notice("request_filed", ("school-a-staff",), "user:jdoe", {})
    targets = route(notice, policy.notifications, policy.group_parents)
    assert [t.recipient for t in targets] == ["principal.a@school.test"]  # once, case folded
    nobody = Notice("request_filed", (), "user:jdoe", {})
    assert route(nobody, policy.notifications, policy.group_parents) == []


@pytest.mark.parametrize(
    ("kind", "person_told"),
    [("request_approved", True), ("request_denied", True), ("grant_ending", True),
     ("request_filed", False), ("emergency_declared", False)],
)  # fmt: skip
def test_the_person_is_told_only_their_own_outcomes(kind: str, person_told: bool) -> None:
    spec = NotificationsSpec.model_validate(
        {"email": {"host": "127.0.0.1", "from": "sg@school.test"}, "people": {"jdoe": "j@s.test"}}
    )
    settings = NotificationSettings.compile(spec, Path())
    targets = route(Notice(kind, (), "user:jdoe", {}), settings)
    assert ([t.recipient for t in targets] == ["j@s.test"]) is person_told


def test_a_directory_address_is_used_when_the_rules_name_none() -> None:
    spec = NotificationsSpec.model_validate({"email": {"host": "::1", "from": "sg@school.test"}})
    settings = NotificationSettings.compile(spec, Path())
    notice = Notice("request_approved", (), "user:amy", {})
    directory = {"user:amy": "amy@school.test"}.get
    assert [t.recipient for t in route(notice, settings, email_of=directory)] == ["amy@school.test"]
    assert route(Notice("request_approved", (), "ip:10.1.2.3", {}), settings, {}, directory) == []


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("  recipients:\n    - {when: [request_filed], groups: [school-c], webhook: [x]}\n"
         "  webhooks: {x: {url: 'https://h.example/x'}}\n",
         "notifications.recipients[0].groups[0]: unknown group 'school-c'"),
        ("  recipients:\n    - {when: [request_filed], webhook: [ops]}\n",
         "notifications.recipients[0].webhook[0]: unknown webhook 'ops'"),
        ("  webhooks: {x: {url: 'http://hooks.example/x'}}\n",
         "notifications.webhooks.x.url: 'http://hooks.example/x': webhooks go over https"),
        ("  recipients:\n    - {when: [request_filed], email: [a@school.test]}\n",
         "notifications.recipients[0].email: addresses to mail, but no relay"),
        ("  recipients:\n    - {when: [request_filed], email: ['a@school.test\\nBcc: x@y.z']}\n",
         "notifications.recipients[0].email"),
        ("  recipients:\n    - {when: [request_field], webhook: [x]}\n",
         "notifications.recipients[0].when[0]"),
        ("  email: {host: smtp.example.org, security: none, from: a@school.test}\n",
         "security: none sends mail and password in clear"),
        ("  email: {host: smtp.example.org, username: u, password_file: nope, from: a@s.test}\n",
         "notifications.email.password_file: password file 'nope' not found"),
        ("  webhooks: {x: {url: 'https://h.example/x', format: slack, secret_file: pw}}\n",
         "secret_file signs generic webhooks"),
    ],
)  # fmt: skip
def test_bad_notification_settings_are_refused_naming_file_line_and_field(
    tmp_path: Path, block: str, message: str
) -> None:
    path = write_rules(tmp_path, None, block)
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    text = str(e.value)
    assert message in text
    assert f"{path}:" in text


# -- what is said ---------------------------------------------------------------------------


def test_slack_and_teams_payloads_carry_a_reason_as_text_never_as_markup() -> None:
    notice = Notice(
        "request_filed", (), "user:jdoe",
        {"site": "facebook.com", "reason": "<!channel> see [this](https://evil.example) & *now*",
         "request_id": "r-1", "url": "https://www.facebook.com/", "at": T0.isoformat()},
    )  # fmt: skip
    message = describe(notice, "Test District", ZoneInfo("America/Denver"))
    slack = json.loads(json.dumps(slack_payload(message)))
    assert set(slack) == {"text"}
    assert "<!channel>" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]
    assert "&amp;" in slack["text"]
    teams = json.loads(json.dumps(teams_payload(message)))
    assert teams["type"] == "message"
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard" and card["content"]["version"]
    texts = [b["text"] for b in card["content"]["body"] if b["type"] == "TextBlock"]
    assert any(r"\[this\]\(https://evil\.example\)" in t for t in texts)
    assert "10:00 MST" in message.text()  # times in the district's zone


def test_backoff_doubles_is_capped_and_jittered() -> None:
    assert backoff(1, lambda: 1.0) == 15.0
    assert backoff(2, lambda: 1.0) == 30.0
    assert backoff(30, lambda: 1.0) == 600.0
    assert backoff(30, lambda: 0.0) == 300.0


# -- delivering -------------------------------------------------------------------------------


def make_notifier(path: Path, db: Path, node: str, clock: Clock) -> Notifier:
    policy = load_policy(path)
    store = open_store(db, clock=clock.now)
    return Notifier(store, lambda: policy, node, clock=clock.now, interval_s=0.05)


def test_several_workers_deliver_each_notice_once_per_recipient(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    path = write_rules(tmp_path, smtp, RECIPIENTS)
    clock = Clock(T0)
    db = tmp_path / "state" / "socialguard.db"
    workers = [make_notifier(path, db, f"gw-w{i}", clock) for i in range(3)]
    store = open_store(db, clock=clock.now)
    ids = [file(store, n) for n in range(6)] + [file(store, 9, ("school-b-staff",))]
    for w in workers:
        w.start()
    try:
        got = smtp.wait_for("principal.a@school.test", 6)
        smtp.wait_for("principal.b@school.test", 1)
        for w in workers:
            w.run_once()  # and once more each, after all are delivered: nothing more is sent
    finally:
        for w in workers:
            w.stop()
    assert len(smtp.to("principal.a@school.test")) == 6
    assert len(smtp.to("principal.b@school.test")) == 1
    assert sorted(i for m in got for i in ids if i in m.body) == sorted(ids[:6])
    rows = SqliteOutbox(store).rows()
    assert {r["status"] for r in rows} == {"delivered"} and len(rows) == 7


def test_a_restarted_worker_resumes_what_its_predecessor_claimed(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    path = write_rules(tmp_path, smtp, RECIPIENTS)
    clock = Clock(T0)
    db = tmp_path / "state" / "socialguard.db"
    store = open_store(db, clock=clock.now)
    file(store, 1)
    dead = make_notifier(path, db, "gw-w0", clock)
    policy = load_policy(path)
    dead.outbox.route_new(
        lambda n: route(n, policy.notifications, policy.group_parents), clock.now()
    )
    claimed = dead.outbox.claim_due("gw-w0", clock.now(), timedelta(minutes=5))
    assert len(claimed) == 1  # ...and the process dies before sending
    other = make_notifier(path, db, "gw-w1", clock)
    assert other.run_once() == 0, "another node leaves a live claim alone"
    again = make_notifier(path, db, "gw-w0", clock).start()
    try:
        smtp.wait_for("principal.a@school.test")
    finally:
        again.stop()
    assert len(smtp.to("principal.a@school.test")) == 1


def test_a_grant_about_to_end_is_announced_once_to_its_holder_and_school(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    path = write_rules(tmp_path, smtp, RECIPIENTS)
    clock = Clock(T0)
    db = tmp_path / "state" / "socialguard.db"
    store = open_store(db, clock=clock.now)
    rid = file(store, 1)
    store.approve_request(rid, T0 + timedelta(hours=1), ADMIN)
    short = store.add_grant("user:jdoe", ("x.test",), T0, T0 + timedelta(minutes=10), "r", ADMIN)
    a = make_notifier(path, db, "gw-w0", clock)
    b = make_notifier(path, db, "gw-w1", clock)
    assert a.outbox.raise_ending(clock.now(), timedelta(minutes=15)) == 0, "not yet"
    clock.advance(timedelta(minutes=46))
    assert a.outbox.raise_ending(clock.now(), timedelta(minutes=15)) == 1
    assert b.outbox.raise_ending(clock.now(), timedelta(minutes=15)) == 0, "once"
    endings = [n for n in a.outbox.notices() if n["kind"] == "grant_ending"]
    assert len(endings) == 1 and endings[0]["subject"] != short.id
    assert json.loads(endings[0]["groups"]) == ["school-a-staff"]  # the request's groups
    a.start()
    try:
        mails = smtp.wait_for("jdoe@school.test", 2)  # approved, then ending
        smtp.wait_for("principal.a@school.test", 2)  # filed, then ending
    finally:
        a.stop()
    assert any("ending soon" in m.subject.lower() for m in mails)


def test_finished_notices_are_pruned_and_pending_ones_kept(tmp_path: Path) -> None:
    clock = Clock(T0)
    store = open_store(tmp_path / "s.db", clock=clock.now)
    outbox = SqliteOutbox(store)
    file(store, 1)
    file(store, 2)
    spec = NotificationsSpec.model_validate(
        {"email": {"host": "127.0.0.1", "from": "sg@school.test"},
         "recipients": [{"when": ["request_filed"], "email": ["p@school.test"]}]}
    )  # fmt: skip
    settings = NotificationSettings.compile(spec, tmp_path)
    outbox.route_new(lambda n: route(n, settings), clock.now())
    first, _second = outbox.claim_due("n", clock.now(), timedelta(minutes=5))
    outbox.delivered(first.id, "n", clock.now())
    clock.advance(timedelta(days=100))
    assert outbox.prune(clock.now() - timedelta(days=90)) == 1
    assert [r["status"] for r in outbox.rows()] == ["pending"]
    assert len(outbox.notices()) == 1
