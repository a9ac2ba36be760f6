"""The adversarial suite's real parts: the proxy harness, and an origin that records every byte.

Each case is an attack through the real proxy (`tests/proxy/conftest.py`'s embedded mitmproxy,
loaded under its own module name: test directories are not packages). Every upstream connection
the proxy opens is steered to one loopback `RecordingOrigin`, which keeps the raw bytes of each
connection: what was relayed opaquely, what arrived inside TLS and under which SNI. A test asserts
on what reached the origin and on what the decision log says, not on status codes alone.

The origin answers each HTTP/1.x request it can parse with a small 200 (naming what it saw), and
echoes any other bytes back, so an opaque relay is visible from both ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from proxy_harness import load_proxy_harness  # tests/proxy_harness.py

harness = load_proxy_harness()


def _load_netns() -> Any:
    """tests/deploy/netns.py (private namespaces for real names), loaded like the harness."""
    name = "socialguard_netns"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent.parent / "deploy" / "netns.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


netns = _load_netns()
ca_dir = harness.ca_dir
start_proxy = harness.start_proxy
curl = harness.curl
TEST_RULES = harness.TEST_RULES
SCHOOL_HOURS = harness.SCHOOL_HOURS
EVENING = harness.EVENING
ORIGIN_NAMES = (*harness.UPSTREAM_NAMES, "static.xx.fbcdn.net", "localhost")

MAX_RECORDED = 1 << 20  # per connection: an attack case needs far less, and memory stays bounded
# the start of a request line, whatever the target's length (a long target is still a request)
_REQUEST_START = re.compile(rb"^[A-Z]{3,10} [^\s]")


@dataclass
class OriginConnection:
    """One connection as the origin saw it: `raw` before any TLS, `data` the application bytes."""

    peer: tuple[str, int]
    tls: bool = False
    sni: str | None = None
    raw: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)
    requests: list[bytes] = field(default_factory=list)  # each request head, as received

    def saw(self, needle: bytes) -> bool:
        return needle in self.data or needle in self.raw


class RecordingOrigin:
    """A loopback origin that records all: plain and TLS on one port, told apart by first byte."""

    def __init__(self, cert: Path, key: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = self._on_sni
        self.cert = cert
        self._lock = threading.Lock()
        self.connections: list[OriginConnection] = []
        origin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                origin._serve(self.request, self.client_address)

        self.server = socketserver.ThreadingTCPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # -------------------------------------------------------------------- what the tests read

    def received(self) -> bytes:
        """All bytes every connection delivered (raw and decrypted), for "did X get through?"."""
        with self._lock:
            return b"".join(bytes(c.raw) + bytes(c.data) for c in self.connections)

    def saw(self, needle: bytes) -> bool:
        return needle in self.received()

    def count(self) -> int:
        with self._lock:
            return len(self.connections)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -------------------------------------------------------------------- serving

    def _on_sni(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
        conn = getattr(sock, "origin_connection", None)
        if conn is not None:
            conn.sni = name

    def _serve(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        conn = OriginConnection(peer)
        with self._lock:
            self.connections.append(conn)
        sock.settimeout(10)
        stream: socket.socket = sock
        try:
            if sock.recv(1, socket.MSG_PEEK) == b"\x16":
                conn.tls = True
                stream = self.context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                stream.origin_connection = conn  # type: ignore[attr-defined]  # read by _on_sni
                stream.do_handshake()  # type: ignore[attr-defined]
            self._converse(stream, conn)
        except (OSError, ssl.SSLError):
            pass  # the proxy or client hung up or failed a handshake: what arrived is recorded
        finally:
            stream.close()

    def _converse(self, stream: socket.socket, conn: OriginConnection) -> None:
        buffer = b""
        while True:
            chunk = stream.recv(65536)
            if not chunk:
                return
            target = conn.data if conn.tls else conn.raw
            if len(target) < MAX_RECORDED:
                target.extend(chunk[: MAX_RECORDED - len(target)])
            buffer += chunk
            if not _REQUEST_START.match(buffer[:16]) and len(buffer) >= 16:
                stream.sendall(chunk)  # not HTTP: an echo makes an opaque relay visible
                buffer = b""
                continue
            buffer = self._answer_requests(stream, conn, buffer)

    @staticmethod
    def _answer_requests(stream: socket.socket, conn: OriginConnection, buffer: bytes) -> bytes:
        while b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = _content_length(head)
            if len(rest) < length:
                return buffer  # the body is still coming
            conn.requests.append(head)
            buffer = rest[length:]
            line = head.split(b"\r\n", 1)[0]
            host = _header(head, b"host")
            body = b"origin saw " + line + b" host=" + host + b"\n"
            stream.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        return buffer


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


def _content_length(head: bytes) -> int:
    value = _header(head, b"content-length")
    return int(value) if value.isdigit() else 0


@pytest.fixture(scope="session")
def upstream_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The origin's own certificate: a client that meets it was not inspected by the proxy."""
    return harness.make_self_signed(tmp_path_factory.mktemp("origin"), ORIGIN_NAMES)


@pytest.fixture
def origin(upstream_cert: tuple[Path, Path]) -> Iterator[RecordingOrigin]:
    """A fresh recording origin for each test, so what it saw is that test's alone."""
    rec = RecordingOrigin(*upstream_cert)
    yield rec
    rec.close()


@pytest.fixture
def upstreams(origin: RecordingOrigin) -> Any:
    """Overrides the harness's echo upstreams: every port the proxy connects to reaches `origin`."""
    return harness.Upstreams(origin.port, origin.port, origin.cert, [])


# ------------------------------------------------------------------------- raw clients


@contextlib.contextmanager
def tunnel(proxy: Any, target: str, timeout: float = 10) -> Iterator[socket.socket]:
    """A socket through the proxy's CONNECT to `target` (HOST:PORT), after its 200."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    try:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        assert status.split()[1:2] == [b"200"], f"CONNECT {target}: {head!r}"
        yield sock
    finally:
        sock.close()


class RawTls:
    """TLS over a socket by hand (ssl.MemoryBIO), so the client's first record can be rewritten:
    a determined client is free to send any record-layer version bytes on its ClientHello."""

    def __init__(self, sock: socket.socket, obj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:  # fmt: skip
        self.sock, self.obj, self.incoming, self.outgoing = sock, obj, incoming, outgoing

    def getpeercert(self) -> Any:
        return self.obj.getpeercert()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.incoming.write_eof()
            return False
        self.incoming.write(chunk)
        return True

    def write(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def read_all(self, limit: int = 1 << 20) -> bytes:
        """What the other end sends until it closes (or `limit` bytes): one answer's worth."""
        out = b""
        while len(out) < limit:
            try:
                out += self.obj.read(65536)
                if b"\r\n\r\n" in out and _complete(out):
                    return out
            except ssl.SSLWantReadError:
                try:
                    if not self._fill():
                        continue
                except (TimeoutError, ConnectionResetError):
                    return out
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return out
        return out


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    return len(body) >= _content_length(head)


def tls_over_tunnel(
    sock: socket.socket,
    sni: str,
    context: ssl.SSLContext,
    *,
    record_version: bytes,
    split_at: int | None = None,
) -> RawTls:
    """Handshake over `sock`, the ClientHello's record-layer version bytes set to
    `record_version` (every record of the first flight); `split_at`: the hello is sent in two
    writes, a moment apart, so the proxy most likely reads it in two. Raises ssl.SSLError on
    failure."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    first = True
    for _ in range(100):  # bounded: a handshake is a few round trips
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        data = outgoing.read()
        if first and data:
            data = _set_record_versions(data, record_version)
            first = False
            if split_at is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(data[:split_at])
                time.sleep(0.2)  # not an assertion: only so the two writes arrive apart
                data = data[split_at:]
        if data:
            sock.sendall(data)
        chunk = sock.recv(65536)
        if not chunk:
            raise ssl.SSLError("the proxy closed the connection during the handshake")
        incoming.write(chunk)
    else:
        raise AssertionError("the handshake did not finish")
    tls = RawTls(sock, obj, incoming, outgoing)
    tls._flush()
    return tls


def _set_record_versions(data: bytes, version: bytes) -> bytes:
    out = bytearray(data)
    offset = 0
    while offset + 5 <= len(out):
        out[offset + 1 : offset + 3] = version
        offset += 5 + int.from_bytes(out[offset + 3 : offset + 5], "big")
    return bytes(out)
