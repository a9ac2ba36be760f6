"""Fixtures for issue 7 through the real proxy: the proxy tests' harness, with recording upstreams.

The embedded proxy, CA and clients come from `tests/proxy/conftest.py` (loaded under its own
module name: test directories are not packages). The loopback upstreams are replaced by ones that
record what reached them (headers, body size and SHA-256), so a test can tell "blocked before the
origin saw it" from "forwarded intact".
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxy_harness import load_proxy_harness  # tests/proxy_harness.py

harness = load_proxy_harness()
ca_dir = harness.ca_dir
UPSTREAM_NAMES = (
    *harness.UPSTREAM_NAMES,
    "outlook.live.com",
    "accounts.google.com",
    "login.microsoftonline.com",
    "login.live.com",
)
start_proxy = harness.start_proxy


@dataclass(frozen=True)
class Seen:
    """One request as the upstream received it."""

    host: str
    method: str
    path: str
    headers: dict[str, list[str]]
    size: int
    sha256: str


class Received:
    """Everything the loopback upstreams received, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def add(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def on(self, host: str, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if s.host == host and (path is None or s.path == path)]


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        digest = hashlib.sha256()
        left = length
        while left > 0:  # bounded: at most `length` bytes, in 64 KiB reads
            chunk = self.rfile.read(min(65536, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        headers: dict[str, list[str]] = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        host = (self.headers.get("Host") or "").split(":")[0]
        self.server.received.add(
            Seen(host, self.command, self.path, headers, length - left, digest.hexdigest())
        )
        body = f"upstream ok host={host} size={length - left}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Plain(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, received: Received) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.received = received


class _Tls(_Plain):
    def __init__(self, received: Received, context: ssl.SSLContext) -> None:
        super().__init__(received)
        self.context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


@pytest.fixture(scope="session")
def upstream_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The upstreams' own certificate, naming the sign-in and webmail hosts too (a connection
    passed through undecrypted meets it)."""
    return harness.make_self_signed(tmp_path_factory.mktemp("upstream"), UPSTREAM_NAMES)


@pytest.fixture(scope="session")
def received() -> Received:
    return Received()


@pytest.fixture(scope="session")
def upstreams(upstream_cert: tuple[Path, Path], received: Received) -> Iterator[Any]:
    """Overrides the harness's echo upstreams (same shape) with recording ones."""
    cert, key = upstream_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    plain, tls = _Plain(received), _Tls(received, ctx)
    for s in (plain, tls):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    ups = harness.Upstreams(plain.server_address[1], tls.server_address[1], cert, [plain, tls])
    yield ups
    for s in ups.servers:
        s.shutdown()
        s.server_close()
