"""How long the proxy waits on an origin: to connect, and in silence once connected.

mitmproxy 12 has an idle timeout (`tcp_timeout`: a client connection with no traffic either way
for that long is closed, with its upstream connections), but none for connecting: an origin whose
address drops SYNs holds the client until the kernel gives up (about two minutes on Linux), and
each waiting client holds its memory and descriptors that long. `ConnectTimeouts` adds one: armed
in `server_connect`, it cancels the connection attempt (mitmproxy's own connect task) when it has
not completed in time, which mitmproxy reports to the client as a 502 with the reason given here.
"""

from __future__ import annotations

import asyncio
import weakref

import structlog
from mitmproxy import connection

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "ConnectTimeouts",
    "parse_connect_timeout",
]

log = structlog.get_logger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
"""Seconds to wait for an origin's TCP handshake: a live origin answers in well under a second."""
DEFAULT_IDLE_TIMEOUT_S = 300
"""Seconds of silence (both ways) after which `socialguard run` closes a connection (mitmproxy's
`tcp_timeout`, 600 by default there): an origin that never answers holds nothing longer."""
MAX_CONNECT_TIMEOUT_S = 300.0


def parse_connect_timeout(raw: float) -> float:
    """The `socialguard_connect_timeout` option: seconds, above 0 and at most 300."""
    if not 0 < raw <= MAX_CONNECT_TIMEOUT_S:
        raise ValueError(
            f"socialguard_connect_timeout: {raw} s is outside (0, {MAX_CONNECT_TIMEOUT_S:g}] s"
        )
    return raw


class ConnectTimeouts:
    """Connection attempts to origins, each with a deadline; see the module's docstring."""

    def __init__(self, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._timers: weakref.WeakKeyDictionary[connection.Server, asyncio.TimerHandle] = (
            weakref.WeakKeyDictionary()
        )

    def arm(self, server: connection.Server) -> None:
        """Start the deadline for `server`'s connection attempt (from `server_connect`, which
        mitmproxy runs in the very task that then connects)."""
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop (unit tests calling the hook directly)
            return
        if task is None:
            return
        loop = asyncio.get_running_loop()
        self._timers[server] = loop.call_later(self.timeout_s, self._expire, server, task)

    def disarm(self, server: connection.Server) -> None:
        """The attempt ended (connected, failed, or refused): no deadline any more."""
        timer = self._timers.pop(server, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, server: connection.Server, task: asyncio.Task[object]) -> None:
        if self._timers.pop(server, None) is None:
            return
        log.warning(
            "upstream_connect_timeout",
            address=list(server.address) if server.address else None,
            timeout_s=self.timeout_s,
        )
        task.cancel(f"no connection to the origin within {self.timeout_s:g} s (socialguard)")
