"""Where the proxy itself listens: so that no request through it is aimed back at it.

The engine (engine/gateway.py) knows the gateway's addresses by their spelling (loopback, the
unspecified address, `localhost`); only the running proxy knows its own listening sockets. A
destination is one of them when its port is a listening port and its address is this machine's:
by spelling, or, for any other address, because the kernel lets a socket bind to it (cheap, and
asked only for destinations on a listening port).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

from socialguard.engine.gateway import is_gateway_host
from socialguard.engine.hosts import is_ip_literal

__all__ = ["OwnSockets"]

Address = tuple[Any, ...]


class OwnSockets:
    """The proxy's listening sockets, read from mitmproxy when first needed after a change."""

    def __init__(self, listening: Callable[[], Iterable[Address]]) -> None:
        self._listening = listening
        self._ports: frozenset[int] | None = None

    def forget(self) -> None:
        """The listeners may have changed (mode, listen_host, listen_port): read them again."""
        self._ports = None

    def is_listener(self, host: str, port: int) -> bool:
        """Is `host:port` (host normalised, as the client asked) one of the proxy's own sockets?"""
        ports = self._ports
        if ports is None or not ports:
            ports = self._ports = frozenset(int(a[1]) for a in self._listening())
        if port not in ports:
            return False
        if is_gateway_host(host):
            return True
        return is_ip_literal(host) and _is_local_address(host)


@functools.lru_cache(maxsize=1024)
def _is_local_address(host: str) -> bool:
    """Can a socket bind to this address here, i.e. is it one of this machine's own?"""
    ip = ipaddress.ip_address(host)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True
