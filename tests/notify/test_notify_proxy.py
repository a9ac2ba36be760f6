"""Notifications through the real proxy: a staff member asks from the block page, the approver's
mailbox (a real SMTP server demanding STARTTLS and AUTH) gets it, the CLI's answer reaches the
person, a relay outage loses nothing and repeats nothing, a hanging channel holds up no request,
and a rejected rules file is announced."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import SMTP_PASSWORD, SMTP_USER, Receiver, SmtpServer, curl, free_port

pytestmark = pytest.mark.e2e

APPROVER = "principal.a@school.test"
TEACHER = "teacher@school.test"
HTML = ("-H", "Accept: text/html")


def rules(
    tmp_path: Path,
    smtp: SmtpServer,
    hook_url: str = "http://127.0.0.1:9/never",
    *,
    hook_format: str = "generic",
    extra: str = "",
) -> str:
    password = tmp_path / "smtp-password"
    password.write_text(SMTP_PASSWORD + "\n")
    secret = tmp_path / "hook-secret"
    secret.write_text("hook-key\n")
    secret_line = f", secret_file: {secret}" if hook_format == "generic" else ""
    return f"""\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
  school-b:
    networks: [10.9.0.0/16]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
default: allow
notifications:
  email:
    host: 127.0.0.1
    port: {smtp.port}
    username: {SMTP_USER}
    password_file: {password}
    ca_file: {smtp.cert}
    from: "socialguard <socialguard@school.test>"
  webhooks:
    hook: {{url: "{hook_url}", format: {hook_format}{secret_line}, timeout: 3}}
  people:
    "ip:127.0.0.1": {TEACHER}
  recipients:
    - when: [request_filed, emergency_declared]
      groups: [staff]
      email: [{APPROVER}]
    - when: [request_filed]
      groups: [school-b]
      email: [principal.b@school.test]
    - when: [rules_rejected, emergency_declared]
      webhook: hook
{extra}"""


def file_request(proxy: Any, reason: str) -> str:
    """Open the block page and send its access request form, as a browser would; the id."""
    page = curl(proxy, "https://www.facebook.com/groups/class-7b", *HTML)
    assert page.status == 403
    token = re.search(r'action="/\.socialguard/request".*?name="token" value="([^"]+)"', page.body)
    assert token, "the block page offers the request form"
    sent = curl(
        proxy,
        "https://www.facebook.com/.socialguard/request",
        "--data-urlencode", f"token={token.group(1)}",
        "--data-urlencode", f"reason={reason}",
    )  # fmt: skip
    assert sent.status == 200, sent.body
    found = re.search(r"\((r-[a-z0-9]+)\)", sent.body)
    assert found, sent.body
    return found.group(1)


def cli(proxy: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOCIALGUARD_STATE": str(proxy.rules.parent / "state")}
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *args, "--rules", str(proxy.rules)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def deliveries(proxy: Any) -> list[dict[str, Any]]:
    db = proxy.rules.parent / "state" / "socialguard.db"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in conn.execute(
                "SELECT d.*, o.kind FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq"
                " ORDER BY d.id"
            )
        ]


def wait_until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def metrics(port: int) -> str:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def figure(text: str, name: str, channel: str) -> float:
    m = re.search(rf'^{name}{{channel="{re.escape(channel)}"}} (\S+)$', text, re.MULTILINE)
    assert m, f"{name}{{channel={channel}}} not in /metrics"
    return float(m.group(1))


def test_a_filed_request_reaches_the_approver_and_the_answer_reaches_the_person(
    start_proxy: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    proxy = start_proxy(rules(tmp_path, smtp))
    rid = file_request(proxy, "Posting the <b>field trip</b> photos for 7B")

    mail = smtp.wait_for(APPROVER)[0]
    assert mail.tls and mail.authenticated, "STARTTLS and AUTH before the mail"
    assert "www.facebook.com" in mail.subject or "facebook.com" in mail.subject
    assert "ip:127.0.0.1" in mail.body
    assert "Posting the <b>field trip</b> photos for 7B" in mail.body  # plain text, verbatim
    assert rid in mail.body and f"socialguard grant approve {rid}" in mail.body
    assert smtp.to("principal.b@school.test") == [], "school B's principal is not told"

    answer = cli(proxy, "grant", "approve", rid, "--for", "1h", "--by", "supt.garcia")
    assert answer.returncode == 0, answer.stderr
    told = smtp.wait_for(TEACHER)[0]
    assert "approved" in told.subject.lower()
    assert "supt.garcia" in told.body and "facebook.com" in told.body
    assert told.tls and told.authenticated
    rows = deliveries(proxy)
    assert sorted((r["kind"], r["recipient"], r["status"]) for r in rows) == [
        ("request_approved", TEACHER, "delivered"),
        ("request_filed", APPROVER, "delivered"),
    ]


def test_a_denied_request_reaches_the_person_with_the_reason(
    start_proxy: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    proxy = start_proxy(rules(tmp_path, smtp))
    rid = file_request(proxy, "Class page")
    smtp.wait_for(APPROVER)
    answer = cli(proxy, "grant", "deny", rid, "--reason", "Use the district page", "--by", "p")
    assert answer.returncode == 0, answer.stderr
    told = smtp.wait_for(TEACHER)[0]
    assert "denied" in told.subject.lower()
    assert "Use the district page" in told.body


def test_a_relay_outage_keeps_the_notice_and_delivers_it_once_when_back(
    start_proxy: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    admin = free_port()
    proxy = start_proxy(rules(tmp_path, smtp), socialguard_admin=f"127.0.0.1:{admin}")
    smtp.stop()
    file_request(proxy, "Outage test")
    failed = wait_until(
        "a failed attempt",
        lambda: [r for r in deliveries(proxy) if r["attempts"] >= 1 and r["last_error"]],
    )
    assert failed[0]["status"] == "pending", "kept for the next attempt"
    text = metrics(admin)
    assert figure(text, "socialguard_notifications_pending", "email") == 1
    assert figure(text, "socialguard_notifications_failed_total", "email") >= 1
    assert figure(text, "socialguard_notifications_sent_total", "email") == 0

    smtp.start()
    proxy.clock.advance(timedelta(hours=1))  # past the longest backoff
    got = smtp.wait_for(APPROVER)
    assert len(got) == 1
    wait_until("delivered", lambda: deliveries(proxy)[0]["status"] == "delivered")
    proxy.clock.advance(timedelta(hours=1))
    time.sleep(3)  # a few more passes of the worker (interval 2 s): nothing is sent again
    assert len(smtp.to(APPROVER)) == 1
    text = metrics(admin)
    assert figure(text, "socialguard_notifications_pending", "email") == 0
    assert figure(text, "socialguard_notifications_sent_total", "email") == 1


def test_a_hanging_webhook_holds_up_no_request_through_the_proxy(
    start_proxy: Any, smtp: SmtpServer, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.hang.set()
    proxy = start_proxy(rules(tmp_path, smtp, receiver.url + "/hook"))
    page = curl(proxy, "https://www.facebook.com/", *HTML)
    token = re.search(
        r'action="/\.socialguard/emergency".*?name="token" value="([^"]+)"', page.body
    )
    assert token
    declared = curl(
        proxy, "https://www.facebook.com/.socialguard/emergency",
        "--data-urlencode", f"token={token.group(1)}", "--data-urlencode", "reason=fire drill",
    )  # fmt: skip
    assert declared.status == 200
    receiver.wait_for(1)  # the worker is now inside a POST that will not be answered
    for _ in range(5):
        res = curl(proxy, "http://www.example.org/")
        assert res.status == 200 and "upstream ok" in res.body
    smtp.wait_for(APPROVER)  # the same notice by mail is not held up behind the webhook either
    failed = wait_until(
        "the hanging POST timed out",
        lambda: [r for r in deliveries(proxy) if r["recipient"] == "hook" and r["last_error"]],
    )
    assert failed[0]["status"] == "pending"


def test_a_rejected_rules_file_is_announced_once_signed(
    start_proxy: Any, smtp: SmtpServer, receiver: Receiver, tmp_path: Path
) -> None:
    proxy = start_proxy(rules(tmp_path, smtp, receiver.url + "/hook"))
    text = proxy.rules.read_text()
    proxy.rules.write_text(text.replace("who: [staff]", "who: [staf]"))
    posted = receiver.wait_for(1)[0]
    body = posted.json()
    assert body["kind"] == "rules_rejected"
    assert any("unknown group 'staf'" in e for e in body["facts"]["errors"])
    stamp = posted.headers["X-Socialguard-Timestamp"]
    mac = hmac.new(b"hook-key", f"{stamp}.".encode() + posted.body, hashlib.sha256)
    assert posted.headers["X-Socialguard-Signature"] == "sha256=" + mac.hexdigest()
    assert posted.headers["X-Socialguard-Event"] == body["event_id"]
    time.sleep(3)
    assert len(receiver.got()) == 1, "one rejected version, one notice"
