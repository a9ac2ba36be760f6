"""AuditLog: the proxy's hash-chained, rotating, durable decision log writer.

Writing is a chain of structlog processors that ends in this module's own file sink (run by
`AuditLog._emit`, which calls them as structlog's BoundLogger would):

    event dict ─▶ DropChainFields ─▶ EventEncoder (the event's JSON)
               ─▶ ChainFileSink (v, seq, ts, node, prev; h; os.write)

`write()` returns only after `os.write` has handed the whole line to the kernel, so a SIGKILL of the
proxy after a response went out cannot lose that response's record. A background thread fsyncs at
least every `fsync_interval_s` (default 0.5 s), writes signed checkpoints (every
`checkpoint_interval_s`, after `idle_checkpoint_s` without writes, and at rotation) and gzips closed
files. Rotation happens by size and at midnight in the district's zone; each file ends with
`file_close` (its name and record count) and the next begins with `file_open`, linked by `prev` like
any other record.

One writer per chain: a lock file in the log directory refuses a second process for the same node.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.typing import EventDict

from socialguard import fsmode, paths
from socialguard.errors import AuditError

from . import files
from .chain import (
    GENESIS,
    H_MARK,
    LEAF_HASHER,
    LineError,
    encode_event,
    unseal,
)
from .chains import chain_id_of, read_anchor
from .checkpoints import CheckpointSink, last_checkpoint, load_private_key
from .schema import CHAIN_FIELDS, SCHEMA_VERSION, TYPE_FILE_CLOSE, TYPE_FILE_OPEN
from .shipping import CheckpointShipper, RecordShipper

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEZONE = ZoneInfo("America/Denver")


class _ChainState:
    """The chain's head: last seq and hash written, the open file and its counters."""

    __slots__ = ("bytes", "count", "fd", "file_name", "head", "seq", "tmax", "tmin", "torn")

    def __init__(self) -> None:
        self.seq = 0
        self.head = GENESIS
        self.fd = -1
        self.file_name = ""
        self.bytes = 0  # the open file's size: where the last whole record ends
        self.count = 0
        self.torn = False  # a failed write left bytes after `bytes` that could not be cut yet
        # the open file's earliest and latest record time (a clock may step back): the next
        # file's file_open states them, so readers skip files by what they hold
        self.tmin = float("inf")
        self.tmax = float("-inf")


def _roll_back(state: _ChainState) -> None:
    """Cut the open file back to its last whole record, so a failed write (a full disk, an I/O
    error) leaves no partial line for the next record to be appended to. Shrinking a file needs
    no free space; if even that fails, the next write tries again before it writes."""
    try:
        os.ftruncate(state.fd, state.bytes)
    except OSError:
        state.torn = True
    else:
        state.torn = False


class DropChainFields:
    """Processor: the writer owns v, seq, ts, node, prev and h; an event cannot set them.

    The event dict travels as structlog's positional `event` (one reference, not 17 keyword
    arguments copied three times on the way in: this is the hot path).
    """

    def __call__(self, _logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        event = event_dict["event"]
        if not CHAIN_FIELDS.isdisjoint(event):
            event_dict["event"] = {k: v for k, v in event.items() if k not in CHAIN_FIELDS}
        return event_dict


_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


class EventEncoder:
    """Processor (renderer): the event's own members as JSON (`encode_event`), for the sink."""

    def __call__(self, _logger: Any, _method: str, event_dict: EventDict) -> Any:
        return (encode_event(event_dict["event"]),), {}


class ChainFileSink:
    """The wrapped "logger": stamps the chain fields around an encoded event (v, seq, ts, node,
    prev), seals it (h), hands the line to the OS and advances the chain head.

    Stamping, sealing and writing are one call: `msg` runs once per request, between mitmproxy's
    own work, where every Python call and copy costs several times what it does in a tight loop.
    The fixed fields are laid out by string formatting around the event's JSON, so the JSON
    encoder only sees what varies, and `chain.seal` is written out (one encode, one hash, one
    join); a test holds the line written equal to `seal`'s.
    """

    def __init__(self, state: _ChainState, node: str, clock: Callable[[], float]) -> None:
        self._state = state
        self._head = f'{{"v":{SCHEMA_VERSION},"seq":'
        self._node = f',"node":{json.dumps(node, ensure_ascii=False)}'
        self._clock = clock
        self._sec = -1
        self._prefix = ""

    def timestamp(self, t: float) -> str:
        """UTC ISO-8601 with milliseconds; the date-time part is cached per second."""
        sec = int(t)
        if sec != self._sec:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._sec = sec
        return self._prefix + _MILLIS[int((t - sec) * 1000)]

    def msg(self, fields: str, t: float | None = None) -> int:
        """Seal and append the event encoded as `fields`; its seq, once the kernel has the whole
        line. `t`: the record's time, when the caller has read the clock already."""
        state = self._state
        seq = state.seq + 1
        if t is None:
            t = self._clock()
        sec = int(t)
        if sec != self._sec:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._sec = sec
        body = (
            f'{self._head}{seq},"ts":"{self._prefix}{_MILLIS[int((t - sec) * 1000)]}"'
            f'{self._node}{fields},"prev":"{state.head}"'
        ).encode()
        hasher = LEAF_HASHER.copy()
        hasher.update(body)
        hasher.update(b"}")
        h = hasher.hexdigest()
        line = b"".join((body, H_MARK, h.encode("ascii"), b'"}\n'))
        try:
            if state.torn:
                os.ftruncate(state.fd, state.bytes)
                state.torn = False
            n = os.write(state.fd, line)
            while n < len(line):  # a short write (rare: signals, full disk): finish the line
                n += os.write(state.fd, line[n:])
        except OSError as e:
            _roll_back(state)
            raise AuditError(
                f"{state.file_name}: cannot write the decision log: {e.strerror}"
            ) from e
        state.seq = seq
        state.head = h
        state.bytes += n
        state.count += 1
        if t > state.tmax:  # noqa: PLR1730 - a compare costs less than a call to max() a record
            state.tmax = t
        if t < state.tmin:  # noqa: PLR1730 - as above
            state.tmin = t
        return seq


class AuditLog:
    """The decision log of one node (one chain). Thread-safe; meant to be written from one
    process."""

    def __init__(
        self,
        log_dir: Path | str,
        node: str,
        *,
        checkpoint_dir: Path | str | None = None,
        signing_key: Ed25519PrivateKey | Path | str | None = None,
        timezone: ZoneInfo = DEFAULT_TIMEZONE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync_interval_s: float = 0.5,
        checkpoint_interval_s: float = 300.0,
        idle_checkpoint_s: float = 10.0,
        syslog_address: str | tuple[str, int] | None = None,
        ship_to: tuple[str, int] | None = None,
        ship_tls: Any = None,
        ship_records: bool = False,
        compress: bool = True,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        if not node:
            raise AuditError("the node id must not be empty")
        if max_bytes < 4096:
            raise AuditError(f"max_bytes must be at least 4096, not {max_bytes}")
        self.log_dir = Path(log_dir)
        self.node = node
        self.host = host or os.uname().nodename  # in checkpoints: which machine wrote the chain
        self.timezone = timezone
        self.max_bytes = max_bytes
        self._clock = clock
        self._compress = compress
        self._fsync_interval = fsync_interval_s
        self._checkpoint_interval = checkpoint_interval_s
        self._idle_checkpoint = idle_checkpoint_s
        self._lock = threading.Lock()
        self._state = _ChainState()
        self._closed = False
        self._to_compress: list[Path] = []
        try:
            fsmode.audit_dir(self.log_dir)
        except OSError as e:
            raise AuditError(
                f"{self.log_dir}: cannot create the log directory: {e.strerror}"
            ) from e
        self._lock_fd = self._take_writer_lock()
        self._ship = (ship_to, ship_tls)
        self._ship_records = ship_records
        self.shipper: CheckpointShipper | None = None
        self.record_shipper: RecordShipper | None = None  # every record, when asked
        try:
            self._start(checkpoint_dir, signing_key, syslog_address)
        except BaseException:
            os.close(self._lock_fd)  # let a corrected restart take the chain
            raise

    def _start(
        self,
        checkpoint_dir: Path | str | None,
        signing_key: Ed25519PrivateKey | Path | str | None,
        syslog_address: str | tuple[str, int] | None,
    ) -> None:
        """Open the sinks, continue the chain on disk, open a new file, start the thread."""
        clock = self._clock
        node = self.node
        key = load_private_key(signing_key) if signing_key is not None else None
        # The commands pass both (`paths.checkpoint_dir`, `paths.audit_key`); a library caller
        # that passes no directory gets one beside its log directory, and no key means unsigned.
        cp_dir = (
            Path(checkpoint_dir)
            if checkpoint_dir is not None
            else self.log_dir.parent / paths.CHECKPOINT_DIRNAME
        )
        self._checkpoints = CheckpointSink(cp_dir, node, key, syslog_address=syslog_address)
        ship_to, ship_tls = self._ship
        if ship_to is not None:  # the off-box anchor: ships the checkpoint file as it grows
            self.shipper = CheckpointShipper(
                self._checkpoints.path, ship_to, hostname=self.host, tls=ship_tls
            ).start()
            if self._ship_records:
                self.record_shipper = RecordShipper(
                    self.log_dir, node, ship_to, hostname=self.host, tls=ship_tls
                )
        self._chain_id = ""
        self._log_dir_text = str(self.log_dir.resolve())
        self._drop = DropChainFields()
        self._encode = EventEncoder()
        self._sink = ChainFileSink(self._state, node, clock)
        self._last_write = clock()
        self._last_checkpoint = self._last_write
        self._checkpoint_seq = -1
        self._dirty = False
        self._next_midnight = 0.0
        self._pending_open: tuple[int, str | None, dict[str, Any]] | None = None
        self._file_index = 0
        self._file_day = self._local_day(self._last_write)
        index, prev_file, recovery = self._recover()
        self._open_file(self._clock(), index, prev_file, recovery)
        if self.record_shipper is not None:  # after the file: a first start ships from it
            self.record_shipper.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._background, name=f"audit-{node}", daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The last sequence number written."""
        return self._state.seq

    @property
    def head(self) -> str:
        """The hash of the last record written."""
        return self._state.head

    @property
    def current_file(self) -> Path:
        return self.log_dir / self._state.file_name

    def write(self, event: dict[str, Any]) -> int:
        """Append one event; return its seq once the line is in the kernel's hands."""
        with self._lock:
            now = self._ready_to_write()
            seq: int = self._emit(event)
            self._dirty = True
            self._last_write = now
            return seq

    def write_encoded(self, fields: str) -> int:
        """`write` for an event already encoded by `chain.encode_event` (see
        `schema.EncodedDecisions`). Such an event must not carry the chain's own fields: the
        processors that drop them are skipped here."""
        with self._lock:
            now: float = self._clock()
            if self._closed or now >= self._next_midnight or self._state.bytes >= self.max_bytes:
                now = self._ready_to_write()  # refuses a closed log, rotates when due
            seq: int = self._sink.msg(fields, now)
            self._dirty = True
            self._last_write = now
            return seq

    def _ready_to_write(self) -> float:
        """With the lock held: refuse a closed log, rotate when due; the time of the write."""
        if self._closed:
            raise AuditError("the decision log is closed")
        now: float = self._clock()
        if self._pending_open is not None:
            self._finish_open(now)
        elif now >= self._next_midnight:
            self._rotate(now, "day")
        elif self._state.bytes >= self.max_bytes:
            self._rotate(now, "size")
        return now

    def checkpoint(self, reason: str = "requested") -> dict[str, Any] | None:
        """Fsync and write a signed checkpoint of the current head now."""
        with self._lock:
            if self._closed:
                return None
            return self._checkpoint_locked(reason)

    def close(self) -> None:
        """Stop the background thread, close the file (`file_close`), fsync, checkpoint."""
        with self._lock:
            if self._closed:
                return
            self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            if self._state.fd >= 0 and self._pending_open is None:
                try:
                    self._close_file(self._clock(), "shutdown")
                except AuditError as e:  # a full disk: the next start recovers the open file
                    log.error("audit_close_failed", error=str(e))
            self._checkpoint_locked("shutdown")
            if self._state.fd >= 0:
                os.close(self._state.fd)
            self._state.fd = -1
            self._closed = True
        self._run_compression()
        self._checkpoints.close()
        if self.shipper is not None:
            self.shipper.stop()
        if self.record_shipper is not None:
            self.record_shipper.stop()
        os.close(self._lock_fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, event: dict[str, Any]) -> int:
        """Run the processor chain and hand the line to the sink (called with the lock held).

        The processors are structlog processors, called here as structlog's `BoundLogger` calls
        them, minus what a decision record does not need: its per-call copy of a bound context and
        its method dispatch (a few microseconds of every decision).
        """
        event_dict = self._drop(None, "msg", {"event": event})
        args, _ = self._encode(None, "msg", event_dict)
        return self._sink.msg(*args)

    # -- files and rotation -------------------------------------------------------------------

    def _take_writer_lock(self) -> int:
        path = self.log_dir / f".writer-{files.safe_node(self.node)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise AuditError(
                f"{self.log_dir}: another process is already writing "
                f"the chain of node {self.node!r}"
            ) from e
        return fd

    def _new_chain(self, follows: dict[str, Any] | None) -> dict[str, Any]:
        """Begin a chain: a new identity, seq from 1; its first record says which chain of this
        node the checkpoints knew before it (so `verify` can tell a new chain, a restored or moved
        directory from a log that lost records)."""
        self._chain_id = secrets.token_hex(12)
        self._state.seq, self._state.head = 0, GENESIS
        return {"follows": follows} if follows else {}

    def _follows(self, cp: dict[str, Any] | None, log_ends_at: int | None) -> dict[str, Any] | None:
        if cp is None:
            return None
        follows = {k: cp.get(k) for k in ("seq", "head", "ts", "log_dir", "host")}
        follows["chain"] = chain_id_of(cp)
        if log_ends_at is not None:
            follows["log_ends_at"] = log_ends_at
        return follows

    def _recover(self) -> tuple[int, str | None, dict[str, Any]]:
        """Continue the node's chain after the last file on disk (seq, head, next index), or
        begin a new one: in an empty directory, or when this node's checkpoints show that the
        log on disk lacks records it once had (a directory restored from an older copy)."""
        mine = [
            f
            for f in files.list_log_files(self.log_dir)
            if f.node_in_name == files.safe_node(self.node)
        ]
        if not mine:
            anchor = read_anchor(self.log_dir, self.node)
            if anchor:
                self._state.seq = int(anchor["next_seq"]) - 1
                self._state.head = str(anchor["next_prev"])
                self._chain_id = chain_id_of({**anchor, "node": self.node})
                return 1, None, {}
            cp = self._newest_checkpoint(None)
            if cp is not None and cp.get("log_dir") not in (None, self._log_dir_text):
                cp = None  # a sibling directory's chain, not this directory's predecessor
            return 1, None, self._new_chain(self._follows(cp, None))
        mine.sort(key=lambda f: f.index)
        while len(mine) > 1 and not mine[-1].gz and mine[-1].path.stat().st_size == 0:
            mine.pop().path.unlink()  # created but never written (crash before file_open)
        last = mine[-1]
        record, torn = _last_record(last)
        self._state.seq = int(record["seq"])
        self._state.head = str(record["h"])
        self._chain_id = _chain_of_file(last, self.node)
        cp = self._newest_checkpoint(self._chain_id)
        if cp is not None and int(cp.get("seq", 0)) > self._state.seq:
            log.warning(
                "audit_log_behind_checkpoints",
                chain=self._chain_id,
                log_ends_at=self._state.seq,
                checkpoint_seq=cp.get("seq"),
            )
            follows = self._follows(cp, self._state.seq)
            if self._compress:
                self._to_compress.extend(f.path for f in mine if not f.gz)
            return last.index + 1, None, self._new_chain(follows)
        recovery: dict[str, Any] = {}
        if record.get("type") != TYPE_FILE_CLOSE:
            recovery["recovered"] = True
            if torn:
                recovery["torn_bytes"] = torn
            log.warning(
                "audit_chain_recovered", file=str(last.path), seq=self._state.seq, torn_bytes=torn
            )
            if self._compress and not last.gz:
                self._to_compress.append(last.path)
        for f in mine:
            if not f.gz and f.path != last.path:
                self._to_compress.append(f.path)
        if record.get("type") == TYPE_FILE_CLOSE and self._compress and not last.gz:
            self._to_compress.append(last.path)
        return last.index + 1, last.base_name, recovery

    def _newest_checkpoint(self, chain: str | None) -> dict[str, Any] | None:
        try:
            return last_checkpoint(self._checkpoints.path, self.node, chain)
        except OSError as e:
            log.warning(
                "audit_checkpoints_unreadable", file=str(self._checkpoints.path), error=str(e)
            )
            return None

    def _local_day(self, now: float) -> date:
        return datetime.fromtimestamp(now, self.timezone).date()

    def _midnight_after(self, day: date) -> float:
        nxt = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=self.timezone)
        return nxt.timestamp()

    def _open_file(
        self, now: float, index: int, prev_file: str | None, extra: dict[str, Any]
    ) -> None:
        """Begin the next file: create it and write its `file_open`. If either fails (a full
        disk), the write that needed it fails and the next write tries again, so no record is
        ever written into a file that does not begin with `file_open`."""
        self._pending_open = (index, prev_file, extra)
        self._next_midnight = 0.0  # sends every write through `_ready_to_write` until opened
        self._finish_open(now)

    def _finish_open(self, now: float) -> None:
        assert self._pending_open is not None
        index, prev_file, extra = self._pending_open
        st = self._state
        if st.fd < 0:
            day = self._local_day(now)
            name = files.log_file_name(self.node, day.strftime("%Y%m%d"), index)
            path = self.log_dir / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
                fsmode.audit_file(fd)
                files.fsync_dir(self.log_dir)
            except FileExistsError:
                index = max(index, self._last_index_on_disk()) + 1  # left empty by a failed open
                self._pending_open = (index, prev_file, extra)
                raise AuditError(f"{path}: exists already; retrying with the next index") from None
            except OSError as e:
                raise AuditError(f"{path}: cannot create a decision log file: {e.strerror}") from e
            st.fd, st.file_name, st.bytes, st.count = fd, name, 0, 0
            st.tmin, st.tmax = float("inf"), float("-inf")
            self._file_index = index
            self._file_day = day
        self._emit(
            {
                "type": TYPE_FILE_OPEN,
                "file": st.file_name,
                "prev_file": prev_file,
                "chain": self._chain_id,
                **extra,
            }
        )
        self._pending_open = None
        self._next_midnight = self._midnight_after(self._file_day)
        self._dirty = True

    def _last_index_on_disk(self) -> int:
        mine = [
            f.index
            for f in files.list_log_files(self.log_dir)
            if f.node_in_name == files.safe_node(self.node)
        ]
        return max(mine, default=0)

    def _close_file(self, now: float, reason: str) -> str:
        st = self._state
        name = st.file_name
        self._emit({"type": TYPE_FILE_CLOSE, "file": name, "count": st.count + 1, "reason": reason})
        try:
            os.fsync(st.fd)
        except OSError as e:
            log.error("audit_fsync_failed", file=name, error=e.strerror)
        self._dirty = False
        return name

    def _rotate(self, now: float, reason: str) -> None:
        """Close the current file and open the next, linked by the chain (called with the lock
        held)."""
        old = self._close_file(now, reason)
        os.close(self._state.fd)
        self._state.fd = -1
        if self._compress:
            self._to_compress.append(self.log_dir / old)
        st = self._state
        held = {
            "prev_ts_min": self._sink.timestamp(st.tmin),
            "prev_ts_max": self._sink.timestamp(st.tmax),
        }
        self._open_file(now, self._file_index + 1, old, held)
        self._checkpoint_locked("rotation")
        log.info("audit_file_rotated", closed=old, opened=self._state.file_name, reason=reason)

    # -- durability and checkpoints -----------------------------------------------------------

    def _checkpoint_locked(self, reason: str) -> dict[str, Any] | None:
        """Fsync, then anchor the head (a checkpoint must never cover records not yet on disk)."""
        st = self._state
        if st.seq == 0:
            return None
        if st.fd >= 0:
            try:
                os.fsync(st.fd)
            except OSError as e:
                log.error("audit_fsync_failed", file=st.file_name, error=e.strerror)
                return None
            self._dirty = False
        now = self._clock()
        body = {
            "v": SCHEMA_VERSION,
            "type": "checkpoint",
            "node": self.node,
            "chain": self._chain_id,
            "log_dir": self._log_dir_text,
            "host": self.host,
            "seq": st.seq,
            "head": st.head,
            "ts": self._sink.timestamp(now),
            "file": st.file_name,
            "reason": reason,
        }
        try:
            cp = self._checkpoints.emit(body)
        except OSError as e:
            log.error("audit_checkpoint_failed", error=e.strerror, seq=st.seq)
            return None
        self._last_checkpoint = now
        self._checkpoint_seq = st.seq
        if self.shipper is not None:
            self.shipper.wake()
        if self.record_shipper is not None:
            self.record_shipper.wake()
        return cp

    def _fsync_now(self) -> None:
        """Fsync outside the lock (on a duplicate descriptor) so writers never wait on the disk."""
        with self._lock:
            if not self._dirty or self._state.fd < 0:
                return
            fd = os.dup(self._state.fd)
            self._dirty = False
        try:
            os.fsync(fd)
        except OSError as e:
            log.error("audit_fsync_failed", error=e.strerror)
        finally:
            os.close(fd)

    def _checkpoint_due(self, now: float) -> str | None:
        if now - self._last_checkpoint >= self._checkpoint_interval:
            return "interval"
        if (
            self._state.seq != self._checkpoint_seq
            and now - self._last_write >= self._idle_checkpoint
        ):
            return "idle"
        return None

    def _run_compression(self) -> None:
        with self._lock:
            pending, self._to_compress = self._to_compress, []
        for path in pending:
            try:
                files.compress(path)
            except (OSError, subprocess.CalledProcessError) as e:
                log.error("audit_compress_failed", file=str(path), error=str(e))

    def _background(self) -> None:
        while not self._stop.wait(self._fsync_interval):
            try:
                self._fsync_now()
                reason = self._checkpoint_due(self._clock())
                if reason:
                    self.checkpoint(reason)
                if self._to_compress:
                    self._run_compression()
            except Exception as e:  # the thread must survive; the write path reports its own errors
                log.error("audit_background_failed", error=repr(e))


def _chain_of_file(lf: files.LogFile, node: str) -> str:
    """The chain a log file belongs to, from its first record."""
    line = files.first_line(lf.path) or b""
    try:
        record, _, _ = unseal(line)
    except LineError as e:
        raise AuditError(
            f"{lf.path}:1: cannot continue the chain, its first record is unreadable ({e}); "
            "run `socialguard audit verify`"
        ) from e
    return chain_id_of({**record, "node": record.get("node", node)})


def _last_record(lf: files.LogFile) -> tuple[dict[str, Any], int]:
    """The last complete record of a file, and how many torn bytes after it were cut off."""
    torn = 0
    if lf.gz:
        last = b""
        for _, line in files.iter_lines(lf.path):
            last = line
        tail = last
    else:
        with open(lf.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            chunk = 1 << 16
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                body = data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]
                if body.count(b"\n") >= 2 or start == 0:
                    break
                chunk *= 4
            if not data.endswith(b"\n"):
                torn = len(data) - len(body)
                f.truncate(size - torn)
                f.flush()
                os.fsync(f.fileno())
            lines = body.splitlines()
            tail = lines[-1] if lines else b""
    if not tail:
        raise AuditError(f"{lf.path}: the last log file is empty; run `socialguard audit verify`")
    try:
        record, stored, _ = unseal(tail)
    except LineError as e:
        raise AuditError(
            f"{lf.path}: cannot continue the chain, its last record is unreadable ({e}); "
            "run `socialguard audit verify`"
        ) from e
    record["h"] = stored
    return record, torn
