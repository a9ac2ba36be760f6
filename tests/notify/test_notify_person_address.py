"""The person is told the answer at their own address, found without anyone typing it: through
the real proxy, a teacher the Wi-Fi's RADIUS names files a request from the block page, an
administrator denies it with the CLI, and the mailbox the district's directory (a real slapd)
gives for her gets the reason; a person with no address anywhere gets nothing and nothing fails;
a directory outage delays the person's mail and never loses it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_notify_proxy import cli, deliveries, figure, file_request, metrics, wait_until

from conftest import SMTP_PASSWORD, SMTP_USER, SmtpServer, free_port
from slapd_district import (  # tests/slapd_district.py
    GROUPS,
    NEEDS_SLAPD,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    _wait_listening,
    start_slapd,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient"),
    NEEDS_SLAPD,
]

APPROVER = "principal.a@school.test"
RADIUS_SECRET = "s3cret-for-tests"


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    server = start_slapd(tmp_path / "slapd")
    try:
        yield server
    finally:
        server.stop()


def restart(server: Slapd) -> None:
    """Bring a stopped slapd back on the same ports, with the same database."""
    server.stop()
    with server.log.open("ab") as out:
        server.process = subprocess.Popen(
            list(server.process.args),  # type: ignore[arg-type]
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_listening(int(server.ldap_url.rsplit(":", 1)[1]), server.process, server.log)


def rules(tmp_path: Path, smtp: SmtpServer, slapd: Slapd, radius_port: int) -> str:
    (tmp_path / "smtp-password").write_text(SMTP_PASSWORD + "\n")
    (tmp_path / "radius.secret").write_text(RADIUS_SECRET + "\n")
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    return f"""\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    domains: [facebook.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant]
default: allow
identity:
  radius:
    listen: 127.0.0.1:{radius_port}
    secret_file: {tmp_path / "radius.secret"}
  directory:
    url: {slapd.ldap_url}
    insecure_plaintext_on_loopback: true
    bind_dn: {SERVICE_DN}
    bind_password_file: {tmp_path / "bind.pw"}
    user_base: {PEOPLE}
    group_base: {GROUPS}
  groups:
    teachers: [staff]
    students: [staff]
  networks: [127.0.0.0/8]
  unidentified: unknown
notifications:
  email:
    host: 127.0.0.1
    port: {smtp.port}
    username: {SMTP_USER}
    password_file: {tmp_path / "smtp-password"}
    ca_file: {smtp.cert}
    from: "socialguard <socialguard@school.test>"
  recipients:
    - when: [request_filed]
      email: [{APPROVER}]
"""


def radius_start(port: int, user: str, address: str) -> None:
    attrs = (
        f'User-Name = "{user}", Acct-Status-Type = Start, Framed-IP-Address = {address}, '
        f'Acct-Session-Id = "sess-{user}"'
    )
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "2", "-q", f"127.0.0.1:{port}", "acct", RADIUS_SECRET],
        input=attrs, capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def identified_proxy(
    start_proxy: Any, smtp: SmtpServer, slapd: Slapd, tmp_path: Path, user: str, **kw: Any
) -> Any:
    """The proxy, with RADIUS saying `user` holds 127.0.0.1 (the address curl comes from),
    and the directory's groups (mapped onto staff) in force."""
    port = free_port()
    proxy = start_proxy(rules(tmp_path, smtp, slapd, port), **kw)
    radius_start(port, user, "127.0.0.1")
    wait_until(
        f"RADIUS binds {user}",
        lambda: (
            {"teachers", "students"}
            & set(getattr(proxy.addon.identity.person("127.0.0.1"), "groups", ()))
        ),
    )
    return proxy


def test_the_denied_person_gets_the_reason_at_their_directory_address(
    start_proxy: Any, smtp: SmtpServer, slapd: Slapd, tmp_path: Path
) -> None:
    proxy = identified_proxy(start_proxy, smtp, slapd, tmp_path, "alice")
    rid = file_request(proxy, "Class page for 7B")
    filed = smtp.wait_for(APPROVER)[0]
    assert "user:alice" in filed.body

    answer = cli(proxy, "grant", "deny", rid, "--reason", "Use the district page", "--by", "p")
    assert answer.returncode == 0, answer.stderr
    told = smtp.wait_for("alice@district.example")[0]  # her `mail` in the directory
    assert told.rcpt == ["alice@district.example"]
    assert "denied" in told.subject.lower()
    assert "Use the district page" in told.body and rid in told.body
    assert told.tls and told.authenticated
    rows = deliveries(proxy)
    assert sorted((r["kind"], r["recipient"], r["status"]) for r in rows) == [
        ("request_denied", "alice@district.example", "delivered"),
        ("request_filed", APPROVER, "delivered"),
    ]


def test_a_person_with_no_address_anywhere_gets_nothing_and_nothing_fails(
    start_proxy: Any, smtp: SmtpServer, slapd: Slapd, tmp_path: Path
) -> None:
    admin = free_port()
    # sam is in the directory without a `mail`; his user name is not an address
    proxy = identified_proxy(
        start_proxy, smtp, slapd, tmp_path, "sam", socialguard_admin=f"127.0.0.1:{admin}"
    )
    rid = file_request(proxy, "Club page")
    smtp.wait_for(APPROVER)
    answer = cli(proxy, "grant", "deny", rid, "--reason", "No", "--by", "p")
    assert answer.returncode == 0, answer.stderr
    wait_until(
        "the answer was routed",
        lambda: any(r["kind"] == "request_denied" for r in proxy.addon._notifier.outbox.notices()
                    if r["routed_at"]),
    )  # fmt: skip
    assert [m.rcpt for m in smtp.mails] == [[APPROVER]]
    rows = deliveries(proxy)
    assert [(r["kind"], r["status"]) for r in rows] == [("request_filed", "delivered")]
    text = metrics(admin)
    assert figure(text, "socialguard_notifications_failed_total", "email") == 0
    assert figure(text, "socialguard_notifications_abandoned_total", "email") == 0
    assert figure(text, "socialguard_notifications_pending", "email") == 0


def test_a_directory_outage_delays_the_persons_mail_and_never_loses_it(
    start_proxy: Any, smtp: SmtpServer, slapd: Slapd, tmp_path: Path
) -> None:
    proxy = identified_proxy(start_proxy, smtp, slapd, tmp_path, "bob")
    rid = file_request(proxy, "Team page")
    smtp.wait_for(APPROVER)
    slapd.stop()
    proxy.clock.advance(timedelta(minutes=11))  # what the directory said of bob is stale now
    answer = cli(proxy, "grant", "deny", rid, "--reason", "Ask the office", "--by", "p")
    assert answer.returncode == 0, answer.stderr
    failed = wait_until(
        "a failed attempt for bob",
        lambda: [r for r in deliveries(proxy) if r["kind"] == "request_denied" and r["last_error"]],
    )
    assert failed[0]["status"] == "pending", "kept for the next attempt"
    assert "not known yet" in failed[0]["last_error"]
    assert smtp.to("bob@district.example") == []

    restart(slapd)
    proxy.clock.advance(timedelta(hours=1))  # past the longest backoff
    got = smtp.wait_for("bob@district.example")
    assert len(got) == 1 and "Ask the office" in got[0].body
    wait_until(
        "delivered",
        lambda: (
            [r["status"] for r in deliveries(proxy) if r["kind"] == "request_denied"]
            == ["delivered"]
        ),
    )
    proxy.addon._notifier.run_once()
    assert len(smtp.to("bob@district.example")) == 1, "once"
