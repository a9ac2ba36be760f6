"""The channels against real servers: no password without TLS (a relay that does not offer
STARTTLS, as a downgrading attacker would present it, gets nothing), a refused address is given up,
and Slack and Teams receivers get the JSON they read."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from conftest import SMTP_PASSWORD, SMTP_USER, Receiver, SmtpServer, free_port
from socialguard.engine.notifications import EmailServerSpec, Notice, WebhookSpec
from socialguard.notify import DeliveryError, Notifier, describe, send_mail
from socialguard.overrides import Actor, open_store
from socialguard.policy import load_policy

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
NOTICE = Notice("request_filed", (), "user:jdoe", {"site": "facebook.com", "reason": "class"})


class _Plain:
    """An SMTP server offering no STARTTLS that would take AUTH in clear: it records any."""

    def __init__(self) -> None:
        self.auth_seen: list[str] = []
        self.mails = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mails += 1
        return "250 OK"


@pytest.fixture
def plain_relay() -> Iterator[tuple[int, _Plain]]:
    handler = _Plain()

    def authenticator(server: Any, session: Any, envelope: Any, mech: str, data: Any) -> Any:
        handler.auth_seen.append(mech)
        return AuthResult(success=True)

    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
        auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    yield port, handler
    controller.stop()


def spec(port: int, tmp_path: Path, **extra: Any) -> EmailServerSpec:
    (tmp_path / "pw").write_text(SMTP_PASSWORD)
    return EmailServerSpec.model_validate(
        {"host": "127.0.0.1", "port": port, "username": SMTP_USER, "password_file": "pw",
         "from": "sg@school.test", **extra}
    )  # fmt: skip


def test_a_relay_without_starttls_gets_neither_password_nor_mail(
    tmp_path: Path, plain_relay: tuple[int, _Plain]
) -> None:
    port, handler = plain_relay
    message = describe(NOTICE, "D", ZoneInfo("UTC"))
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        send_mail(spec(port, tmp_path), tmp_path, "a@school.test", message, "e1")
    assert handler.auth_seen == [] and handler.mails == 0


def test_a_relay_whose_certificate_is_not_trusted_gets_no_password(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    message = describe(NOTICE, "D", ZoneInfo("UTC"))
    with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|SSL"):
        send_mail(spec(smtp.port, tmp_path), tmp_path, "a@school.test", message, "e1")
    assert smtp.mails == []
    send_mail(spec(smtp.port, tmp_path, ca_file=str(smtp.cert)), tmp_path, "a@school.test",
              message, "e1")  # fmt: skip
    assert len(smtp.mails) == 1 and smtp.mails[0].tls and smtp.mails[0].authenticated


class _Refusing:
    """STARTTLS and AUTH like the real relay, but no such mailbox for nobody@."""

    def __init__(self) -> None:
        self.mails = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mails += 1
        return "250 OK"


def test_an_address_the_relay_refuses_for_good_is_abandoned_not_retried(
    tmp_path: Path, smtp_cert: tuple[Path, Path]
) -> None:
    cert, key = smtp_cert
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    handler = _Refusing()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
        authenticator=lambda *a: AuthResult(success=True), auth_required=True,
    )  # fmt: skip
    controller.start()
    try:
        (tmp_path / "pw").write_text("x")
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            "district: {name: D}\ngroups: {staff: {networks: [10.0.0.0/8]}}\nnotifications:\n"
            f"  email: {{host: 127.0.0.1, port: {port}, username: u, password_file: pw,"
            f" ca_file: {cert}, from: sg@school.test}}\n"
            "  recipients:\n    - {when: [request_filed], email: [nobody@school.test]}\n"
        )
        policy = load_policy(rules)
        store = open_store(tmp_path / "s.db", clock=lambda: T0)
        store.file_request(
            who="user:j", site="facebook.com", url="https://www.facebook.com/", rule_id=None,
            decision_id=None, reason="r", client_ip="10.0.0.1", actor=Actor("user:j", "10.0.0.1"),
        )  # fmt: skip
        notifier = Notifier(store, lambda: policy, "n", clock=lambda: T0)
        assert notifier.run_once() == 1
        assert notifier.run_once() == 0, "not retried"
        [row] = notifier.outbox.rows()
        assert row["status"] == "abandoned" and "550" in row["last_error"]
        assert notifier.stats.channels["email"].abandoned == 1 and handler.mails == 0
    finally:
        controller.stop()


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_slack_and_teams_webhooks_receive_the_json_they_read(
    tmp_path: Path, receiver: Receiver, fmt: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "district: {name: D, timezone: America/Denver}\n"
        "groups: {staff: {networks: [10.0.0.0/8]}}\nnotifications:\n"
        f"  webhooks: {{chat: {{url: '{receiver.url}/services/T0/B0/x', format: {fmt}}}}}\n"
        "  recipients:\n    - {when: [emergency_declared], webhook: chat}\n"
    )
    policy = load_policy(rules)
    store = open_store(tmp_path / "s.db", clock=lambda: T0)
    store.declare_self_emergency(
        scope="ip:10.0.0.1", person="ip:10.0.0.1", site="facebook.com",
        url="https://www.facebook.com/", reason="<!here> lockdown", minutes=30, per_day=2,
        day_start=T0, actor=Actor("ip:10.0.0.1", "10.0.0.1"), groups=["staff"],
    )  # fmt: skip
    notifier = Notifier(store, lambda: policy, "n", clock=lambda: T0)
    assert notifier.run_once() == 1
    [posted] = receiver.got()
    assert posted.path == "/services/T0/B0/x"
    assert posted.headers["Content-Type"].startswith("application/json")
    body = posted.json()
    if fmt == "slack":
        assert list(body) == ["text"] and "&lt;!here&gt; lockdown" in body["text"]
        assert "<!here>" not in body["text"]
    else:
        assert body["type"] == "message"
        [attachment] = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["$schema"].startswith("http")
        assert all(b["type"] == "TextBlock" and b["text"] for b in card["body"])
        assert any("lockdown" in b["text"] for b in card["body"])
    assert notifier.outbox.rows()[0]["status"] == "delivered"


def test_webhook_settings_refuse_plain_http_off_this_machine() -> None:
    with pytest.raises(ValueError, match="webhooks go over https"):
        WebhookSpec.model_validate({"url": "http://10.0.0.5/hook"})
    assert WebhookSpec.model_validate({"url": "http://[::1]:8080/hook"}).url
