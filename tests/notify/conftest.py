"""Real parts for the notifications: an SMTP server (aiosmtpd) that demands STARTTLS and AUTH,
a loopback HTTP receiver that records every POST (or never answers), and the proxy harness.

The SMTP server has its own self-signed certificate (the rules' `ca_file` trusts it) and accepts
one login, `socialguard` / the password in the rules' `password_file`; a client that skips
STARTTLS or AUTH is refused by the server itself, so a delivered mail proves both happened.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from proxy_harness import load_proxy_harness  # tests/proxy_harness.py

harness = load_proxy_harness()
ca_dir = harness.ca_dir
upstreams = harness.upstreams
upstream_cert = harness.upstream_cert
start_proxy = harness.start_proxy
curl = harness.curl

# aiosmtpd logs a deprecation of its own (Session.login_data) on every AUTH; not ours to fix.
logging.getLogger("mail.log").setLevel(logging.ERROR)

SMTP_USER = "socialguard"
SMTP_PASSWORD = "s3cret-relay-pass"


@dataclass
class Mail:
    """One mail as the server received it, with the session facts that prove how."""

    rcpt: list[str]
    mail_from: str
    message: Message
    tls: bool
    authenticated: bool

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode()


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.mails.append(
                Mail(
                    list(envelope.rcpt_tos),
                    str(envelope.mail_from),
                    message_from_bytes(content),
                    tls=session.ssl is not None,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 OK"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """aiosmtpd on a fixed loopback port, STARTTLS and AUTH required; `stop()` / `start()`
    take it down and bring it back on the same port (the relay outage)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.port = free_port()
        self.cert = cert
        self.recorder = _Recorder()
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=self._tls,
            require_starttls=True,
            authenticator=_authenticator,
            auth_required=True,
            auth_require_tls=True,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def mails(self) -> list[Mail]:
        with self.recorder.lock:
            return list(self.recorder.mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.rcpt]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[Mail]:
        """The mails to `address` once there are `count` (bounded wait, then fail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(address)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{address} got {len(self.to(address))} mails, expected {count}")


@pytest.fixture(scope="session")
def smtp_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return harness.make_self_signed(tmp_path_factory.mktemp("smtp"), ("localhost",))


@pytest.fixture
def smtp(smtp_cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = SmtpServer(*smtp_cert)
    server.start()
    yield server
    server.stop()


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP server recording each POST; with `hang`, it reads the request and never
    answers (until the test ends)."""

    server: ThreadingHTTPServer
    posted: list[Posted] = field(default_factory=list)
    hang: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def got(self) -> list[Posted]:
        with self.lock:
            return list(self.posted)

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[Posted]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.got()) >= count:
                return self.got()
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {len(self.got())} POSTs, expected {count}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            rec = box["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.lock:
                rec.posted.append(Posted(self.path, dict(self.headers.items()), body))
            if rec.hang.is_set():
                rec.release.wait(60)
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box["r"] = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield box["r"]
    box["r"].release.set()
    server.shutdown()
    server.server_close()
