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

from . import files

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


def rfc5424(body: str, *, hostname: str, timestamp: str, msgid: str = MSGID) -> bytes:
    """One RFC 5424 message (PRI local0.info, version 1), octet-counted for TCP (RFC 6587)."""
    pri = FACILITY_LOCAL0 * 8 + SEVERITY_INFO
    msg = f"<{pri}>1 {timestamp or '-'} {hostname or '-'} {APP_NAME} - {msgid} - {body}"
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
        while not self._stop.is_set():
            ok = self._ship_pending()
            failures_in_row = 0 if ok else failures_in_row + 1
            wait = self._interval if ok else min(MAX_BACKOFF_S, 0.5 * 2**failures_in_row)
            self._wake.wait(wait)
            self._wake.clear()
        # The last passes begin after stop() was called, so they see every line written before
        # it (a pass already under way when it was called may have read the file too early).
        for _ in range(3):
            if self._ship_pending():
                return

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
        if end == 0:
            return len(data) == RECORD_BATCH
        try:
            error = self._send_lines(data[:end])
            if error is not None:
                log.warning(
                    "audit_shipping_failed",
                    collector=f"{self.address[0]}:{self.address[1]}",
                    error=str(error),
                    backlog_bytes=size - self._offset,
                )
                return False
        finally:
            self._save_offset()
            self.stats.backlog_bytes = size - self._offset
        return True

    def _send_lines(self, data: bytes) -> OSError | None:
        """Send each whole line of `data`, advancing the offset past each one sent; on a failure
        the offset goes back to where the batch began and the error is returned.

        Plain TCP has no acknowledgement: what a batch handed to a dying connection may be lost,
        so the whole batch is sent again (a repeated checkpoint or record is told by its seq)."""
        start = self._offset
        try:
            sock = self._connect()
            for line in data.splitlines():
                sock.sendall(self._message(line))
                self._offset += len(line) + 1
                self.stats.shipped += 1
        except OSError as e:
            self._offset = start
            self.stats.failures += 1
            self.stats.connected = False
            self._close()
            return e
        return None

    def _message(self, line: bytes) -> bytes:
        text = line.decode("utf-8", "replace")
        try:
            ts = str(json.loads(text).get("ts") or "")
        except (ValueError, AttributeError):
            ts = ""
        return rfc5424(text, hostname=self.hostname, timestamp=ts, msgid=MSGID)

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
                return _tls_closed(sock)
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


RECORD_MSGID = "record"
RECORD_BATCH = 1 << 20  # bytes read from a log file per send (bounded memory on a long backlog)
_TS = b'"ts":"'


class RecordShipper(CheckpointShipper):
    """Ships every record of one node's decision log, as written, in chain order (when asked:
    `--audit-syslog-records`), on its own thread like the checkpoints.

    It follows the chain's files, not one file: its position is (file, byte offset in the file's
    uncompressed text), saved beside the log. A file ends for the shipper with its `file_close`
    line; it then goes on with the next file of the node. A closed file gzipped meanwhile is read
    through gzip from the same offset. A first start begins with the newest file (the records
    written from then on, not the whole history). The writer never waits for it: it reads the
    files the writer has written, so an outage only grows the backlog (retried with backoff and
    shown in /metrics), and a file pruned before it was shipped is skipped with a warning."""

    def __init__(
        self,
        log_dir: Path,
        node: str,
        address: tuple[str, int],
        *,
        hostname: str,
        tls: ssl.SSLContext | None = None,
        interval_s: float = 0.5,
        timeout_s: float = 5.0,
    ) -> None:
        self.log_dir = log_dir
        self._node_name = files.safe_node(node)
        self._file: str | None = None  # the base name of the file being shipped
        super().__init__(
            log_dir / f"records-{self._node_name}",  # names the position file only
            address,
            hostname=hostname,
            tls=tls,
            interval_s=interval_s,
            timeout_s=timeout_s,
        )
        self._thread.name = "audit-shipping-records"

    def _mine(self) -> list[files.LogFile]:
        return [f for f in files.list_log_files(self.log_dir) if f.node_in_name == self._node_name]

    def _ship_pending(self) -> bool:
        """Ship what the files hold after the position; True if nothing is left."""
        for _ in range(10_000):  # bounded: one file or one batch a turn
            mine = self._mine()
            if not mine:
                self.stats.backlog_bytes = 0
                return True
            if self._file is None:
                self._file, self._offset = mine[-1].base_name, 0
            current = next((f for f in mine if f.base_name == self._file), None)
            index = _index_of(self._file)
            later = [f for f in mine if f.index > index]
            self.stats.backlog_bytes = sum(_size(f) for f in later)
            if current is None:  # removed (pruned) before it was shipped
                if not later:
                    return True
                log.warning("audit_shipping_file_missing", file=self._file, next=later[0].path.name)
                self._file, self._offset = later[0].base_name, 0
                continue
            full = self._ship_batch(current)
            if full is None:
                return False
            # the writer opens a file only after closing the one before (or, after a crash,
            # leaving it as it was): read to its end, the file is done
            if not full and later:
                self._file, self._offset = later[0].base_name, 0
                self._save_offset()
                continue
            if not full:
                return True
        return True

    def _ship_batch(self, current: files.LogFile) -> bool | None:
        """Send the complete lines of one read; whether there may be more to read (None on a
        failure to send)."""
        try:
            with files.open_lines(current.path) as f:
                f.seek(self._offset)
                data = f.read(RECORD_BATCH)
        except (OSError, EOFError) as e:  # gzipped or pruned under us: next turn sees it
            log.warning("audit_shipping_read_failed", file=str(current.path), error=str(e))
            return False
        if not current.gz:
            self.stats.backlog_bytes += max(0, _size(current) - self._offset)
        end = data.rfind(b"\n") + 1
        if end == 0:
            return len(data) == RECORD_BATCH
        try:
            error = self._send_lines(data[:end])
            if error is not None:
                log.warning(
                    "audit_shipping_failed",
                    collector=f"{self.address[0]}:{self.address[1]}",
                    error=str(error),
                    file=current.base_name,
                )
                return None
        finally:
            self._save_offset()
        return len(data) == RECORD_BATCH

    def _message(self, line: bytes) -> bytes:
        at = line.find(_TS)
        ts = line[at + 6 : line.find(b'"', at + 6)].decode("ascii", "replace") if at >= 0 else ""
        return rfc5424(
            line.decode("utf-8", "replace"),
            hostname=self.hostname,
            timestamp=ts,
            msgid=RECORD_MSGID,
        )

    def _read_offset(self) -> int:
        try:
            name, _, offset = self._offset_file.read_text().strip().partition(" ")
            if files.parse_name(Path(name)) is None:
                return 0
            self._file = name
            return int(offset)
        except (FileNotFoundError, ValueError):
            return 0

    def _save_offset(self) -> None:
        if self._file is None:
            return
        tmp = self._offset_file.with_name(self._offset_file.name + ".tmp")
        try:
            tmp.write_text(f"{self._file} {self._offset}\n")
            os.replace(tmp, self._offset_file)
        except OSError as e:  # a full disk: shipped again after a restart, never lost
            log.warning("audit_shipping_offset_unsaved", error=str(e))


def _index_of(base_name: str) -> int:
    parsed = files.parse_name(Path(base_name))
    return parsed.index if parsed is not None else -1


def _size(f: files.LogFile) -> int:
    try:
        return f.path.stat().st_size
    except FileNotFoundError:
        return 0


def _tls_closed(sock: ssl.SSLSocket) -> bool:
    """Whether a readable TLS connection was closed by the collector. Readable is not closed:
    a TLS 1.3 server sends its session tickets after the handshake. Those must be read, too —
    closing a socket with unread bytes sends a reset, and the collector then drops what it had
    not yet read (found shipping over TLS to rsyslog: a batch lost at each reconnect)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""  # a collector that writes anything is not closed
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False  # only TLS records of its own (session tickets)
    finally:
        sock.settimeout(timeout)


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
