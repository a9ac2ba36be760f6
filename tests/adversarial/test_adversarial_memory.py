"""Running the proxy out of memory, or holding its connections: every body is bounded.

The filter needs no response body, and only the request bodies an upload rule asks about: a
response streams to the client as it arrives, a request the proxy answers itself (block page, 407,
the block page's forms) is answered or refused without its body being read, and an origin that
never answers does not hold the client's connection for ever.

"Without its body being read" is seen from the client: it sends the headers and a first part of a
large declared body, then waits. A proxy that reads bodies before answering keeps waiting for the
rest; one that refuses at the headers answers or closes at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import harness  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

WAIT_S = 10.0  # how long a client waits for the proxy to react; the proxy's own timeouts are below


# ------------------------------------------------------------------------- a slow origin


class SlowOrigin:
    """An HTTP/1.1 origin that sends a chunked response's head and first chunk, then waits.

    `release` lets it finish; `hold` makes it accept and read requests but never answer.
    """

    FIRST = b"first-part-of-a-very-long-body"

    def __init__(self, *, answer: bool = True) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buffer = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            self.requests.append(buffer.partition(b"\r\n\r\n")[0])
            if not self.answer:
                self.release.wait(30)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(self.FIRST), self.FIRST))
            self.release.wait(30)
            conn.sendall(b"4\r\nlast\r\n0\r\n\r\n")

    def close(self) -> None:
        self.release.set()
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()


@pytest.fixture
def slow_origin() -> Iterator[SlowOrigin]:
    origin = SlowOrigin()
    yield origin
    origin.close()


@pytest.fixture
def silent_origin() -> Iterator[SlowOrigin]:
    origin = SlowOrigin(answer=False)
    yield origin
    origin.close()


def steer_to(proxy: Any, port: int) -> None:
    """Point the proxy's upstream connections at `port` (the test's own origin)."""
    proxy.steer.ups = harness.Upstreams(port, port, proxy.steer.ups.cert, [])


# ------------------------------------------------------------------------- a raw client


def open_request(proxy: Any, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
    sock.sendall(head)
    return sock


def read_until(sock: socket.socket, needle: bytes) -> bytes:
    """What the proxy sent until `needle`, its close, or WAIT_S of silence."""
    got = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while needle not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


def reacts(sock: socket.socket) -> tuple[bool, bytes]:
    """Did the proxy answer or close (True), or keep waiting for more body (False)?"""
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return False, b""
    except ConnectionResetError:
        return True, b""
    return True, data


def upload_head(method: str, url: str, host: str, length: int, *extra: str) -> bytes:
    lines = [f"{method} {url} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_part(sock: socket.socket, size: int) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(b"x" * size)


# ------------------------------------------------------------------------- responses stream


def test_a_slow_response_reaches_the_client_as_it_arrives(
    start_proxy: Any, slow_origin: SlowOrigin
) -> None:
    proxy = start_proxy()
    steer_to(proxy, slow_origin.port)
    sock = open_request(
        proxy, b"GET http://www.example.org/endless HTTP/1.1\r\nHost: www.example.org\r\n\r\n"
    )
    try:
        got = read_until(sock, SlowOrigin.FIRST)
    finally:
        slow_origin.release.set()
        sock.close()
    assert slow_origin.requests, "the request reached the origin"
    assert SlowOrigin.FIRST in got, f"the first chunk was held back by the proxy: {got!r}"


# ------------------------------------------------------------------------- bodies not read


def test_a_blocked_upload_is_refused_at_its_headers_not_after_its_body(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    sock = open_request(
        proxy,
        upload_head("POST", "http://www.facebook.com/upload", "www.facebook.com", 12 << 20),
    )
    send_part(sock, 256 * 1024)  # 12 MiB declared (under the old 16 MiB hold), 256 KiB sent
    try:
        reacted, _ = reacts(sock)
    finally:
        sock.close()
    assert reacted, "the proxy waited for the blocked body instead of refusing at once"
    assert not origin.saw(b"/upload")
    [record] = [r for r in proxy.records() if r.get("host") == "www.facebook.com"]
    assert record["action"] == "block"
    assert record["answer"] == "refused_unread"


def test_a_blocked_request_with_a_small_body_still_gets_the_block_page(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    body = b"a=1&b=2"
    sock = open_request(
        proxy,
        upload_head("POST", "http://www.facebook.com/form", "www.facebook.com", len(body)) + body,
    )
    try:
        got = read_until(sock, b"</html>")
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 403")
    assert not origin.saw(b"/form")


@pytest.mark.parametrize("host", ["www.example.org", "www.facebook.com"])
def test_a_large_form_submission_is_refused_at_its_headers(
    start_proxy: Any, origin: Any, host: str
) -> None:
    proxy = start_proxy()
    sock = open_request(
        proxy,
        upload_head(
            "POST",
            f"http://{host}/.socialguard/emergency",
            host,
            300 << 20,
            "Content-Type: application/x-www-form-urlencoded",
        ),
    )
    send_part(sock, 64 * 1024)
    try:
        reacted, answer = reacts(sock)
    finally:
        sock.close()
    assert reacted, "the proxy read the form body instead of refusing it at its headers"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413")
    assert not origin.saw(b".socialguard")
    refused = [r for r in proxy.records() if r.get("type") == "form"]
    assert refused and refused[-1]["outcome"] == "body_too_large"


def test_a_proxy_authentication_challenge_does_not_wait_for_the_body(
    start_proxy: Any, origin: Any, tmp_path: Any
) -> None:
    import bcrypt

    htpasswd = tmp_path / "users.htpasswd"
    password = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"teacher:{password}\n")
    rules = f"auth:\n  htpasswd: {htpasswd}\n" + harness.TEST_RULES
    proxy = start_proxy(rules)
    sock = open_request(
        proxy, upload_head("PUT", "http://www.example.org/big", "www.example.org", 300 << 20)
    )
    send_part(sock, 64 * 1024)
    try:
        reacted, _ = reacts(sock)
    finally:
        sock.close()
    assert reacted, "the proxy read the body before asking for credentials"
    assert not origin.saw(b"/big")


# ------------------------------------------------------------------------- timeouts


def test_an_origin_that_never_answers_does_not_hold_the_client(
    start_proxy: Any, silent_origin: SlowOrigin
) -> None:
    proxy = start_proxy(tcp_timeout=2)
    steer_to(proxy, silent_origin.port)
    sock = open_request(
        proxy, b"GET http://www.example.org/never HTTP/1.1\r\nHost: www.example.org\r\n\r\n"
    )
    try:
        reacted, _ = reacts(sock)
    finally:
        sock.close()
    assert silent_origin.requests, "the request reached the origin"
    assert reacted, "the proxy held the connection open for an origin that never answers"


@pytest.fixture
def unanswering_address() -> Iterator[int]:
    """A loopback port whose listen queue is full: a connection to it never completes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # the kernel takes backlog + 1; past that, SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)  # let the handshakes that can complete, complete (not an assertion)
    yield port
    for s in fillers:
        s.close()
    server.close()


def test_an_origin_that_never_accepts_times_out_at_connect(
    start_proxy: Any, unanswering_address: int
) -> None:
    proxy = start_proxy(socialguard_connect_timeout=1.0)
    steer_to(proxy, unanswering_address)
    sock = open_request(
        proxy, b"GET http://www.example.org/x HTTP/1.1\r\nHost: www.example.org\r\n\r\n"
    )
    try:
        got = read_until(sock, b"\r\n\r\n")
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 502"), f"no answer while connecting upstream: {got!r}"


# ------------------------------------------------------------------------- held uploads' budget

UPLOAD_RULES = harness.TEST_RULES.replace(
    "rules:\n",
    "rules:\n"
    "  - id: staff-social-uploads\n"
    "    description: Staff shall not post school district data\n"
    "    who: [staff]\n"
    "    what: {categories: [social], uploads: true}\n"
    "    action: block\n"
    "    bypass: none\n",
    1,
)
HELD = 600 * 1024  # held for inspection (under the 1m budget); two do not fit together


def held_upload(proxy: Any, path: str) -> socket.socket:
    return open_request(
        proxy,
        upload_head(
            "POST", f"http://www.facebook.com{path}", "www.facebook.com", HELD,
            "Content-Type: text/plain",
        ),
    )  # fmt: skip


def test_held_uploads_share_one_budget_and_one_over_it_is_refused(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy(UPLOAD_RULES, at=harness.EVENING, socialguard_upload_memory="1m")
    first = held_upload(proxy, "/first")
    send_part(first, 64 * 1024)  # held: its 600 KiB are reserved until it is inspected
    second = held_upload(proxy, "/second")
    try:
        reacted, _ = reacts(second)
        assert reacted, "a hold over the budget was made (the proxy waits for its body)"
        send_part(first, HELD - 64 * 1024)
        answer = read_until(first, b"origin saw")
    finally:
        first.close()
        second.close()
    assert b"origin saw POST /first" in answer, "the held upload within the budget went through"
    assert not origin.saw(b"/second")
    [refused] = [r for r in proxy.records() if r.get("upload") == ["held_memory_full"]]
    assert refused["action"] == "block"
    assert refused["answer"] == "refused_unread"
    # the first hold's bytes went back: a third upload is held and inspected again
    third = held_upload(proxy, "/third")
    try:
        send_part(third, HELD)
        assert b"origin saw POST /third" in read_until(third, b"origin saw")
    finally:
        third.close()


# ------------------------------------------------------------------------- a real process's RSS

RSS_MARGIN_MB = 100  # a functional bound with a wide margin: the unbounded proxy grew by 300+ MB


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def socialguard_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`socialguard run` as its own process (its RSS is its own), on a free loopback port."""
    rules = tmp_path / "rules.yaml"
    # The tests' origins listen on this machine's loopback, standing in for remote ones: the
    # policy lets clients reach them (the proxy's own port stays refused whatever it lists).
    rules.write_text(harness.TEST_RULES + 'gateway_services: ["127.0.0.1"]\n')
    err_path = tmp_path / "stderr.txt"
    cmd = [
        sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
        "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
        "--state", str(tmp_path / "state"), "--node", "rss",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    with err_path.open("w") as err:
        proc = subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        port = None
        for _ in range(600):  # bounded: up to a minute on a loaded machine
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", err_path.read_text())
            if m:
                port = int(m.group(1))
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert port is not None, err_path.read_text()
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class _Proxy:
    def __init__(self, port: int) -> None:
        self.port = port


def test_a_300_mb_form_upload_leaves_socialguard_runs_memory_as_it_was(
    socialguard_run: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = socialguard_run
    before = _rss_mb(proc.pid)
    sock = open_request(
        _Proxy(port),
        upload_head(
            "PUT", "http://www.example.org/.socialguard/request", "www.example.org", 300 << 20
        ),
    )
    sent = 0
    block = b"x" * (1 << 20)
    with contextlib.suppress(OSError):
        for _ in range(300):
            sock.sendall(block)
            sent += len(block)
    sock.close()
    grown = _rss_mb(proc.pid) - before
    assert sent < 64 << 20, f"the proxy took {sent >> 20} MB of a body it refuses"
    assert grown < RSS_MARGIN_MB, f"RSS grew by {grown:.0f} MB"


def test_a_large_response_streams_without_growing_socialguard_runs_memory(
    socialguard_run: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = socialguard_run
    size = 300 << 20
    server = socket.create_server(("127.0.0.1", 0))
    origin_port = server.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                block = b"y" * (1 << 20)
                for _ in range(size >> 20):
                    conn.sendall(block)

    threading.Thread(target=serve, daemon=True).start()
    before = _rss_mb(proc.pid)
    head = (
        f"GET http://127.0.0.1:{origin_port}/big HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n"
    ).encode()
    peak, received = before, 0
    try:
        sock = open_request(_Proxy(port), head)
        with contextlib.suppress(OSError):
            for _ in range(2000):  # bounded: reads 64 KiB at a time, a few at a time
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
                if received >= 32 << 20:
                    break
                peak = max(peak, _rss_mb(proc.pid))
        peak = max(peak, _rss_mb(proc.pid))
        sock.close()
    finally:
        server.close()
    assert received >= 1 << 20, "the response reached the client while the origin still sent"
    assert peak - before < RSS_MARGIN_MB, f"RSS grew by {peak - before:.0f} MB"
