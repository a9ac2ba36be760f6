"""Upstreams that misbehave: reset the connection, hang, or drip the body slowly.

Whatever the origin does, the request was decided (and recorded) before a byte left for it, a
blocked request never reaches it, and one hanging origin does not stall anyone else's traffic.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["socialguard_proxy_harness"]

pytestmark = pytest.mark.e2e

SLOW_CHUNKS = 5


class Misbehaving:
    """A plain-HTTP origin on loopback: /reset resets, /hang never answers, /slow drips its body."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.paths: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:  # bounded
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode()
            self.paths.append(path)
            if path == "/reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing with linger 0 sends RST
            if path == "/hang":
                self.stop.wait(30)  # bounded: the fixture's teardown ends it
                return
            if path == "/slow":
                body = [f"part {i}\n".encode() for i in range(SLOW_CHUNKS)]
                size = sum(len(b) for b in body)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                for part in body:
                    time.sleep(0.3)
                    conn.sendall(part)
                return
            body = b"fine\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def origin() -> Iterator[Misbehaving]:
    o = Misbehaving()
    yield o
    o.close()


def _steer(proxy: Any, origin: Misbehaving) -> None:
    proxy.steer.ups = harness.Upstreams(origin.port, origin.port, Path("/nonexistent"))


def _curl(proxy: Any, url: str, max_time: float = 5) -> tuple[int, str]:
    """(curl exit code, body) — curl's code 28 is its own timeout, 52/56 a broken reply."""
    res = subprocess.run(
        ["curl", "-sS", "--max-time", str(max_time), "--noproxy", "", "-x", proxy.url, url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return res.returncode, res.stdout


def _records(proxy: Any, path_host: str = "www.example.org") -> list[dict[str, Any]]:
    return [
        r for r in proxy.records() if r.get("host") == path_host and r.get("stage") == "request"
    ]


def test_reset_by_the_origin_is_a_bad_gateway_after_a_recorded_decision(
    start_proxy: Any, origin: Misbehaving
) -> None:
    proxy = start_proxy(at=harness.EVENING)
    _steer(proxy, origin)
    answer = harness.curl(proxy, "http://www.example.org/reset")
    assert answer.status == 502
    assert "/reset" in origin.paths
    assert [r["action"] for r in _records(proxy)] == ["allow"]


def test_hanging_origin_does_not_stall_other_traffic(start_proxy: Any, origin: Misbehaving) -> None:
    proxy = start_proxy()  # school hours: facebook is blocked
    _steer(proxy, origin)
    hung: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: hung.update(r=_curl(proxy, "http://www.example.org/hang", 4))
    )
    t.start()
    while "/hang" not in origin.paths and t.is_alive():  # bounded by curl's --max-time
        time.sleep(0.05)
    code, body = _curl(proxy, "http://www.example.org/ok")
    blocked = harness.curl(proxy, "http://www.facebook.com/")
    t.join(timeout=30)
    assert (code, body) == (0, "fine\n")
    assert blocked.status == 403
    assert hung["r"][0] == 28, "the hanging request ends by the client's own timeout"
    assert sorted(r["action"] for r in _records(proxy)) == ["allow", "allow"]
    assert "/" not in origin.paths, "the blocked request never reached the origin"


def test_slow_body_arrives_whole(start_proxy: Any, origin: Misbehaving) -> None:
    proxy = start_proxy(at=harness.EVENING)
    _steer(proxy, origin)
    code, body = _curl(proxy, "http://www.example.org/slow", max_time=20)
    assert code == 0
    assert body == "".join(f"part {i}\n" for i in range(SLOW_CHUNKS))
    assert [r["action"] for r in _records(proxy)] == ["allow"]
