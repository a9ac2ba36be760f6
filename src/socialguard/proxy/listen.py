"""Is the listen address free? Asked before mitmproxy starts, so that a port in use is one clear
socialguard message and exit code, not mitmproxy's log line with a `--mode regular@PORT` hint
for a command socialguard does not have."""

from __future__ import annotations

import errno
import socket

__all__ = ["address_in_use"]


def address_in_use(host: str, port: int) -> bool:
    """True when a TCP listener on (host, port) could not bind because the address is taken.

    `host` "" means every address of both families, as mitmproxy listens then. Port 0 is never in
    use. Binds the way asyncio's start_server does (SO_REUSEADDR), then closes at once.
    """
    if port == 0:
        return False
    targets = (
        [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
        if not host
        else [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
    )
    for family, addr in targets:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((addr, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return True
                if e.errno == errno.EAFNOSUPPORT or family == socket.AF_INET6:
                    continue  # no IPv6 here: mitmproxy will not listen there either
                raise
    return False
