"""The off-box anchor: a node's checkpoints shipped, as they are written, to the district's syslog
collector — RFC 5424 messages over TCP (octet-counted framing, RFC 6587), TLS optional.

The shipper tails the local checkpoint file from an offset it keeps beside it, on its own thread:
the writer only wakes it. So shipping never blocks or drops local logging, an outage loses
nothing (the backlog is the file itself, shipped when the collector is back, retried with
backoff), and a restart resumes where the last one stopped. `socialguard audit verify --anchor`
reads the collector's copy back.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

FACILITY_LOCAL0 = 16
SEVERITY_INFO = 6
APP_NAME = "socialguard"
MSGID = "checkpoint"
MAX_BACKOFF_S = 30.0


def parse_address(raw: str) -> tuple[str, int]:
    """`HOST:PORT` ([V6]:PORT) of the collector."""
    host, sep, port = raw.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{raw!r}: expected HOST:PORT of the syslog collector")
    return host, int(port)


def rfc5424(body: str, *, hostname: str, timestamp: str) -> bytes:
    """One RFC 5424 message (PRI local0.info, version 1), octet-counted for TCP (RFC 6587)."""
    pri = FACILITY_LOCAL0 * 8 + SEVERITY_INFO
    msg = f"<{pri}>1 {timestamp or '-'} {hostname or '-'} {APP_NAME} - {MSGID} - {body}"
    data = msg.encode("utf-8")
    return str(len(data)).encode("ascii") + b" " + data


@dataclass(slots=True)
class ShippingStats:
    """What /metrics shows: bytes of checkpoints not yet shipped, failures, messages shipped."""

    shipped: int = 0
    failures: int = 0
    backlog_bytes: int = 0
    connected: bool = False


class CheckpointShipper:
    """Ships one checkpoint file's new lines to a syslog collector, on a daemon thread."""

    def __init__(
        self,
        source: Path,
        address: tuple[str, int],
        *,
        hostname: str,
        tls: ssl.SSLContext | None = None,
        interval_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.source = source
        self.address = address
        self.hostname = hostname
        self.stats = ShippingStats()
        self._tls = tls
        self._interval = interval_s
        self._timeout = timeout_s
        self._offset_file = source.with_name(f".shipped-{source.name}")
        self._offset = self._read_offset()
        self._sock: socket.socket | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-shipping", daemon=True)

    def start(self) -> CheckpointShipper:
        self._thread.start()
        return self

    def wake(self) -> None:
        """A checkpoint was written: ship it soon (returns at once)."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ship what is pending (bounded by `timeout_s`), then stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        self._close()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        failures_in_row = 0
        while True:
            ok = self._ship_pending()
            failures_in_row = 0 if ok else failures_in_row + 1
            if self._stop.is_set():
                if ok or failures_in_row > 2:
                    return
                continue
            wait = self._interval if ok else min(MAX_BACKOFF_S, 0.5 * 2**failures_in_row)
            self._wake.wait(wait)
            self._wake.clear()

    def _ship_pending(self) -> bool:
        """Send every complete line after the offset; True if nothing is left (or all went)."""
        try:
            size = self.source.stat().st_size
        except FileNotFoundError:
            return True
        if size < self._offset:  # the file was replaced: ship it from the start
            self._offset = 0
        self.stats.backlog_bytes = size - self._offset
        if size == self._offset:
            return True
        with open(self.source, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        end = data.rfind(b"\n") + 1
        start = self._offset
        try:
            sock = self._connect()
            for line in data[:end].splitlines():
                sock.sendall(self._message(line))
                self._offset += len(line) + 1
                self.stats.shipped += 1
        except OSError as e:
            # Plain TCP has no acknowledgement: what this batch handed to a dying connection may
            # be lost. Send the whole batch again (a repeated checkpoint is harmless to verify).
            self._offset = start
            self.stats.failures += 1
            self.stats.connected = False
            self._close()
            log.warning(
                "audit_shipping_failed",
                collector=f"{self.address[0]}:{self.address[1]}",
                error=str(e),
                backlog_bytes=size - self._offset,
            )
            return False
        finally:
            self._save_offset()
            self.stats.backlog_bytes = size - self._offset
        return True

    def _message(self, line: bytes) -> bytes:
        text = line.decode("utf-8", "replace")
        try:
            ts = str(json.loads(text).get("ts") or "")
        except (ValueError, AttributeError):
            ts = ""
        return rfc5424(text, hostname=self.hostname, timestamp=ts)

    def _connect(self) -> socket.socket:
        if self._sock is not None and self._peer_closed(self._sock):
            self._close()  # the collector went away since the last batch: reconnect first
        if self._sock is not None:
            return self._sock
        sock: socket.socket = socket.create_connection(self.address, timeout=self._timeout)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.address[0])
        self._sock = sock
        self.stats.connected = True
        return sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """The collector never writes: readable means it closed (or reset) the connection."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            if isinstance(sock, ssl.SSLSocket):
                return True  # a TLS collector sends nothing either: anything readable ends it
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _read_offset(self) -> int:
        try:
            return int(self._offset_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _save_offset(self) -> None:
        tmp = self._offset_file.with_name(self._offset_file.name + ".tmp")
        try:
            tmp.write_text(f"{self._offset}\n")
            os.replace(tmp, self._offset_file)
        except OSError as e:  # a full disk: shipped again after a restart, never lost
            log.warning("audit_shipping_offset_unsaved", error=str(e))


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context verifying the collector (the system's CAs, or `ca_file`)."""
    return ssl.create_default_context(cafile=ca_file)


def as_metrics(stats: ShippingStats | None) -> dict[str, Any]:
    """The figures /metrics reads at scrape time."""
    if stats is None:
        return {}
    return {
        "backlog_bytes": stats.backlog_bytes,
        "failures": stats.failures,
        "shipped": stats.shipped,
        "connected": 1 if stats.connected else 0,
    }
