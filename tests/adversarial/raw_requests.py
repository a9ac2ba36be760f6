"""A client that sends exactly the bytes it is given, through the proxy, for requests curl would
tidy up (backslashes, `;` parameters, stray escapes) or headers it would add."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LIMIT = 1 << 20  # an answer a test reads is small; never read without bound


@dataclass(frozen=True)
class RawAnswer:
    status: int
    head: str
    body: bytes


def _read_all(sock: socket.socket | ssl.SSLSocket) -> bytes:
    out = bytearray()
    while len(out) < _LIMIT:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        out.extend(chunk)
    return bytes(out)


def _parse(raw: bytes) -> RawAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return RawAnswer(status, text, body)


def raw_https(proxy: Any, host: str, request: bytes, *, port: int = 443) -> RawAnswer:
    """CONNECT host:port through the proxy, TLS trusting only the proxy's CA, then `request` as is.

    The request should say `Connection: close`: the answer is read until the proxy closes.
    """
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
    try:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply and len(reply) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        if not reply.startswith(b"HTTP/1.1 200"):
            return _parse(reply)
        ctx = ssl.create_default_context(cafile=str(Path(proxy.ca)))
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            tls.sendall(request)
            return _parse(_read_all(tls))
    finally:
        sock.close()


def raw_http(proxy: Any, request: bytes) -> RawAnswer:
    """`request` (absolute-form, as to a proxy) sent as is over plain HTTP."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as sock:
        sock.sendall(request)
        return _parse(_read_all(sock))


def get(target: str, host: str, *extra: str) -> bytes:
    """A GET for `target` naming `host`, closing after the answer; `extra` header lines."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Accept: text/html", *extra]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")
