"""The two ways out: mail through an SMTP relay, and a JSON POST to a webhook.

Both are blocking calls with bounded time (each SMTP exchange `timeout`; a whole webhook POST
`timeout`), made on the delivery worker's thread, never on the proxy's event loop. A failure is a
`DeliveryError`; `permanent` ones (the relay refused the address for good) are not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from socialguard.engine.notifications import EmailServerSpec, WebhookSpec
from socialguard.errors import SocialGuardError

from .messages import Message

MAX_RESPONSE = 64 * 1024  # of a webhook's answer, read only to say what went wrong
USER_AGENT = "socialguard-notify/1"


class DeliveryError(SocialGuardError):
    """One attempt failed; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def read_secret(path: Path) -> str:
    """The first line of a secret file (password, HMAC key), without its line break."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DeliveryError(f"{path}: cannot read: {e.strerror or e}") from e
    return text.splitlines()[0].strip() if text.strip() else ""


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def build_mail(sender: str, to: str, message: Message, event_id: str) -> EmailMessage:
    """A plain-text mail; its Message-ID is the same for every attempt of one delivery, so a
    mailbox can tell a repeat (after a crash mid-send) from a new notice."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = message.title
    mail["Date"] = formatdate(localtime=False)
    tag = hashlib.sha256(to.encode()).hexdigest()[:10]
    mail["Message-ID"] = f"<{event_id}.{tag}@socialguard.invalid>"
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Socialguard-Event"] = event_id
    mail.set_content(message.text() + "\n")
    return mail


def send_mail(spec: EmailServerSpec, base: Path, to: str, message: Message, event_id: str) -> None:
    """Hand one mail to the relay: STARTTLS (or TLS) before AUTH, as the rules say."""
    ca = base / spec.ca_file if spec.ca_file else None
    password = read_secret(base / spec.password_file) if spec.password_file else None
    mail = build_mail(spec.sender, to, message, event_id)
    smtp: smtplib.SMTP | None = None
    try:
        if spec.security == "tls":
            smtp = smtplib.SMTP_SSL(
                spec.host, spec.port, timeout=spec.timeout, context=_tls_context(ca)
            )
        else:
            smtp = smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout)
        smtp.ehlo()
        if spec.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise DeliveryError(f"{spec.host}: the relay does not offer STARTTLS")
            smtp.starttls(context=_tls_context(ca))
            smtp.ehlo()
        if spec.username is not None:
            smtp.login(spec.username, password or "")
        smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as e:
        codes = [code for code, _ in e.recipients.values()]
        raise DeliveryError(
            f"{spec.host} refused {to}: {e.recipients}", permanent=all(c >= 500 for c in codes)
        ) from e
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError(f"{spec.host}: authentication failed ({e.smtp_code})") from e
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(f"{spec.host}:{spec.port}: {type(e).__name__}: {e}") from e
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def sign(key: str, timestamp: int, body: bytes) -> str:
    """`sha256=HEX` of HMAC-SHA256(key, "TIMESTAMP." + body): what a receiver recomputes (and
    refuses a stale TIMESTAMP, so a recorded POST cannot be replayed)."""
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def post_webhook(
    spec: WebhookSpec, base: Path, payload: dict[str, Any], event_id: str, *, now: float
) -> None:
    """POST `payload` as JSON within `spec.timeout` seconds in all; 2xx is delivered."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Socialguard-Event": event_id,
    }
    if spec.secret_file:
        stamp = int(now)
        headers["X-Socialguard-Timestamp"] = str(stamp)
        headers["X-Socialguard-Signature"] = sign(read_secret(base / spec.secret_file), stamp, body)
    parts = urlsplit(spec.url)
    deadline = time.monotonic() + spec.timeout
    host, port = parts.hostname or "", parts.port
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            host, port, timeout=spec.timeout, context=_tls_context(None)
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=spec.timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body, headers)
        _remaining(conn, deadline)
        resp = conn.getresponse()
        answer = _read_bounded(conn, resp, deadline)
    except (OSError, http.client.HTTPException) as e:
        raise DeliveryError(f"{_shown(spec.url)}: {type(e).__name__}: {e}") from e
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        snippet = " ".join(answer[:200].decode("utf-8", "replace").split())
        raise DeliveryError(f"{_shown(spec.url)}: HTTP {resp.status} {snippet}".rstrip())


def _shown(url: str) -> str:
    """The URL without its path: Slack and Teams webhook paths are the secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."


def _remaining(conn: http.client.HTTPConnection, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("webhook took longer than its timeout")
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _read_bounded(
    conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, deadline: float
) -> bytes:
    """The answer's first MAX_RESPONSE bytes, within the deadline (a receiver trickling bytes
    cannot hold the worker)."""
    out = bytearray()
    while len(out) < MAX_RESPONSE:
        _remaining(conn, deadline)
        chunk = resp.read1(min(16384, MAX_RESPONSE - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)
