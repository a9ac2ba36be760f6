"""The SQLite implementation of the overrides store.

Several processes share one file: the proxy (its refresher reads, its block-page forms write) and
any
number of CLI invocations. So: WAL mode (readers never wait for the writer), a busy timeout, every
write in
`BEGIN IMMEDIATE` (the write lock is taken up front, so no transaction fails half-way upgrading its
lock),
and a bounded retry around the rest, so "database is locked" never reaches a user. Times are
stored as
fixed-width ISO-8601 UTC text, which sorts as it compares.

The file is the store's identity (issue 19). A new store is built beside the path and hard-linked
into place, so nobody ever meets a half-made one; a zero-length, foreign or corrupt file is an
error, never a fresh empty store. Opening reads the recorded migrations first and takes the write
lock only when the schema differs, so opening never waits behind a writer. Every use checks that
the path still names the file that was opened: one replaced (a restore, another process's new
store) is reopened, one deleted or moved is refused loudly (`store_missing`) until a file is back,
so the proxy and the CLI never work on two different files.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import structlog

from socialguard import fsmode
from socialguard.engine.limits import Allowance
from socialguard.engine.model import Emergency, Grant
from socialguard.errors import StoreError
from socialguard.overrides.answers import RequestAnswer

from . import handles, outbox
from .records import (
    USES_WINDOW_HOURS,
    AccessRequest,
    ActiveOverrides,
    Actor,
    AdminEvent,
    EmergencyRecord,
    GrantRecord,
    RecentUses,
)
from .store import (
    Clock,
    FormToken,
    LimitReachedError,
    NotFoundError,
    StateError,
    TokenUsedError,
    utc_now,
)

T = TypeVar("T")

log = structlog.get_logger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
RETRY_DEADLINE_S = 60.0


@dataclass(frozen=True, slots=True)
class Migration:
    """One named, ordered schema step; applied once and recorded in `schema_migrations`."""

    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta (key, value) VALUES ('change_counter', 0);
        CREATE TABLE grants (
            id TEXT PRIMARY KEY,
            who TEXT NOT NULL,
            sites TEXT NOT NULL,            -- JSON array
            starts TEXT NOT NULL,
            ends TEXT NOT NULL,
            reason TEXT NOT NULL,
            by_name TEXT NOT NULL,
            source TEXT NOT NULL,
            created TEXT NOT NULL,
            request_id TEXT,
            revoked_at TEXT,
            revoked_by TEXT,
            revoke_reason TEXT
        );
        CREATE INDEX grants_in_force ON grants (ends) WHERE revoked_at IS NULL;
        CREATE TABLE emergencies (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,            -- all | group:NAME | device:ID | ip:ADDR | user:NAME
            sites TEXT NOT NULL,            -- JSON array; empty = every site
            starts TEXT NOT NULL,
            ends TEXT,                      -- NULL = until stopped
            reason TEXT NOT NULL,
            by_name TEXT NOT NULL,
            source TEXT NOT NULL,
            created TEXT NOT NULL,
            self_declared INTEGER NOT NULL DEFAULT 0,
            person TEXT,
            url TEXT,
            stopped_at TEXT,
            stopped_by TEXT,
            acked_at TEXT,
            acked_by TEXT,
            ack_note TEXT
        );
        CREATE INDEX emergencies_by_person ON emergencies (person, starts) WHERE self_declared = 1;
        CREATE TABLE access_requests (
            id TEXT PRIMARY KEY,
            who TEXT NOT NULL,
            site TEXT NOT NULL,
            url TEXT NOT NULL,
            rule_id TEXT,
            decision_id TEXT,
            reason TEXT NOT NULL,
            created TEXT NOT NULL,
            client_ip TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            decided_at TEXT,
            decided_by TEXT,
            decision_note TEXT,
            grant_id TEXT
        );
        CREATE TABLE admin_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            created TEXT NOT NULL,
            action TEXT NOT NULL,
            by_name TEXT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            reason TEXT NOT NULL,
            details TEXT NOT NULL,          -- JSON object
            claimed_by TEXT,
            claimed_at TEXT
        );
        CREATE INDEX admin_events_unclaimed ON admin_events (seq) WHERE claimed_by IS NULL;
        """,
    ),
    Migration(
        "0002_form_tokens",
        """
        CREATE TABLE form_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret BLOB NOT NULL);
        CREATE TABLE used_form_tokens (nonce TEXT PRIMARY KEY, expires TEXT NOT NULL);
        CREATE INDEX used_form_tokens_expiry ON used_form_tokens (expires);
        """,
    ),
    Migration(
        # An event is confirmed once it is in the decision log; claimed but unconfirmed events are
        # offered to their node again (deduplicated there by event_id). Events claimed before
        # this migration were delivered under the old rule: they count as confirmed.
        "0003_admin_events_confirmed",
        """
        ALTER TABLE admin_events ADD COLUMN event_id TEXT;
        ALTER TABLE admin_events ADD COLUMN confirmed_at TEXT;
        UPDATE admin_events SET confirmed_at = claimed_at WHERE claimed_by IS NOT NULL;
        CREATE INDEX admin_events_unconfirmed ON admin_events (claimed_by, seq)
            WHERE confirmed_at IS NULL AND claimed_by IS NOT NULL;
        """,
    ),
    # Notifications (socialguard.notify): notices and their deliveries, see overrides/outbox.py.
    Migration("0004_outbox", outbox.MIGRATION_SQL),
    Migration(
        # The block page shows each person the answer to their latest request
        # (overrides/answers.py): the snapshot reads the recent ones on every rebuild.
        "0005_access_requests_by_created",
        "CREATE INDEX IF NOT EXISTS access_requests_by_created ON access_requests (created);",
    ),
)


def _ts(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise StoreError("internal: naive datetime given to the store")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _req_dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def new_id(prefix: str) -> str:
    """Short ids an administrator can read out over the phone: `g-7k2m9qxa3b`."""
    return f"{prefix}-{base64.b32encode(secrets.token_bytes(5)).decode().lower()}"


def _private_store(path: Path) -> None:
    """The store's directory, and the store readable by the service alone: it holds the key that
    signs the block page's form tokens (see socialguard.fsmode)."""
    fsmode.state_dir(path.parent)
    # Tightened only: a new store is made whole beside the path (SqliteStore._create), and an
    # empty file here would be refused as a truncated store.
    for side in ("", "-wal", "-shm", "-journal"):
        fsmode.store_file(path.with_name(path.name + side), create=False)


def _is_busy(e: sqlite3.OperationalError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    text = str(e).lower()
    return "locked" in text or "busy" in text


class SqliteStore:
    """The Store on one SQLite file; safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path, *, clock: Clock = utc_now) -> None:
        self.path = path
        self._clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._grant_cache: dict[str, Grant] = {}
        self._generation = 0  # bumped when the path turns out to name another file: reopen
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._missing = False
        self._reopen_lock = threading.Lock()
        self._handles: list[handles.FileHandle] = []  # the files this store has used (see handles)
        try:
            _private_store(path)
        except OSError as e:
            raise StoreError(
                f"{path.parent}: cannot create the state directory: {_os_reason(e)}"
            ) from e
        try:
            exists = path.exists()
        except OSError as e:  # a state directory this account may not enter (not in its group)
            raise StoreError(f"{path}: cannot open the overrides store: {_os_reason(e)}") from e
        if not exists:
            self._create()
        try:
            self._open_file()
        except BaseException:
            self.close()  # its connection and its hold on the file: nobody will close them later
            raise

    # -- the file: creating, checking, following it -------------------------------------------

    def _create(self) -> None:
        """Build a new store beside the path and link it into place (never half-made; if another
        process made one first, that one is used)."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.new")
        try:
            fsmode.store_file(tmp)  # 0600 from the start (0660 shared): holds the form-signing key
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("BEGIN IMMEDIATE")
                self._migrate(conn)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            os.link(tmp, self.path)
        except FileExistsError:
            pass  # another process created it meanwhile: use theirs
        except (OSError, sqlite3.Error) as e:
            raise StoreError(
                f"{self.path}: cannot create the overrides store: {self._diagnose(e)}"
            ) from e
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    Path(f"{tmp}{suffix}").unlink(missing_ok=True)
                except OSError:
                    continue  # (a read-only file system answers EROFS even for a missing file)

    def _check_file(self) -> os.stat_result:
        """What is at the path is an SQLite file with content; else say what it is instead."""
        try:
            # Never open()/close() the file here: that drops this process's SQLite locks on it.
            handle = handles.acquire(self.path)
        except FileNotFoundError as e:
            raise StoreError(f"{self.path}: the overrides store is missing") from e
        except OSError as e:
            raise StoreError(
                f"{self.path}: cannot read the overrides store: {_os_reason(e)}"
            ) from e
        try:
            st = self._check_header(handle)
        except BaseException:
            handle.release()  # not used: no connection of this store has it open
            raise
        if any(h.key == handle.key for h in self._handles):
            handle.release()  # this store holds the file already (a poll seeing it again)
        else:
            self._handles.append(handle)
        return st

    def _check_header(self, handle: handles.FileHandle) -> os.stat_result:
        try:
            st = handle.stat()
            header = handle.header(100)
        except OSError as e:
            raise StoreError(
                f"{self.path}: cannot read the overrides store: {_os_reason(e)}"
            ) from e
        head = header[: len(SQLITE_HEADER)]
        if st.st_size == 0:
            raise StoreError(
                f"{self.path}: zero-length file where the overrides store should be (truncated?); "
                "refusing to start over with an empty store: restore it from a backup, or move it "
                "aside to start a new one"
            )
        if head != SQLITE_HEADER:
            raise StoreError(
                f"{self.path}: not an SQLite database (a foreign or corrupt file); restore the "
                "overrides store from a backup, or move this file aside to start a new one"
            )
        expected = _header_size(header)
        if expected is not None and st.st_size < expected:
            raise StoreError(
                f"{self.path}: truncated ({st.st_size} bytes where its header says {expected}); "
                "the overrides store is corrupt: restore it from a backup"
            )
        return st

    def _open_file(self) -> None:
        """Check the file, migrate only if its schema differs (a read first: no write lock)."""
        st = self._check_file()
        previous, self._identity = self._identity, (st.st_dev, st.st_ino)
        try:
            if not self._schema_current():
                self._retry(self._migrate)
        except BaseException:
            self._identity = previous  # not ours (another program's database): keep refusing it
            raise

    def _follow_file(self) -> None:
        """Make sure the path still names the file in use: reopen a replaced one, refuse a gone
        one (never recreate it: the CLI and the proxy would then use different files)."""
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except OSError as e:
            if not self._missing:
                self._missing = True
                log.error("store_missing", path=str(self.path), error=_os_reason(e))
            raise StoreError(
                f"{self.path}: the overrides store was deleted or moved while in use "
                f"({_os_reason(e)}); restore it (or create a new one with any `socialguard "
                "grant` command) and it is reopened"
            ) from e
        if (st.st_dev, st.st_ino) == self._identity:
            return
        with self._reopen_lock:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                return
            self._generation += 1  # every thread's next use opens the file now at the path
            with self._cache_lock:
                self._grant_cache = {}
            self._open_file()  # raises while what is there is unusable (zero-length, foreign)
            was_missing, self._missing = self._missing, False
            log.warning(
                "store_reopened",
                path=str(self.path),
                reason="reappeared" if was_missing else "replaced",
            )

    def _diagnose(self, e: BaseException) -> str:
        """Why the file cannot be used, in words: read-only, missing, full, corrupt."""
        if isinstance(e, OSError):
            return _os_reason(e)
        text = str(e)
        lower = text.lower()
        if "malformed" in lower or "not a database" in lower:
            return f"corrupt or truncated ({text}); restore it from a backup"
        if "unable to open" in lower or "readonly" in lower or "read-only" in lower:
            return _directory_reason(self.path.parent) or text
        if "is full" in lower:
            return "no space left on the device"
        return text

    # -- connections and transactions ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        self._follow_file()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", 0) != self._generation:
            with self._all_lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()  # this thread's connection to the file the path no longer names
            conn = self._local.conn = None
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
            except sqlite3.Error as e:
                raise StoreError(
                    f"{self.path}: cannot open the overrides store: {self._diagnose(e)}"
                ) from e
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry_raw(lambda: conn.execute("PRAGMA journal_mode = WAL"))  # type: ignore[union-attr]
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            self._local.generation = self._generation
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _retry_raw(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + RETRY_DEADLINE_S
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    if _is_busy(e):
                        raise StoreError(
                            f"{self.path}: the overrides store stayed busy for "
                            f"{RETRY_DEADLINE_S:.0f} s; "
                            "try again"
                        ) from e
                    raise StoreError(f"{self.path}: {self._diagnose(e)}") from e
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _retry(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in its own write transaction (BEGIN IMMEDIATE), retrying whole on
        SQLITE_BUSY."""

        def attempt() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        try:
            return self._retry_raw(attempt)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: {self._diagnose(e)}") from e

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A change: `body` plus a bump of the change counter, in one transaction."""

        def with_bump(conn: sqlite3.Connection) -> T:
            result = body(conn)
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'change_counter'")
            return result

        return self._retry(with_bump)

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A consistent read (one deferred transaction; WAL readers never wait for the writer)."""

        def attempt() -> T:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                return body(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        try:
            return self._retry_raw(attempt)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: {self._diagnose(e)}") from e

    def _schema_current(self) -> bool:
        """Whether every known migration is recorded (a plain read: no write lock, no waiting).

        An empty database is not current (it gets migrated); one with tables but none of ours is
        another program's, and an error."""

        def read(conn: sqlite3.Connection) -> bool:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not tables:
                return False
            if "schema_migrations" not in tables:
                raise StoreError(
                    f"{self.path}: an SQLite database, but not a socialguard overrides store "
                    f"(tables: {', '.join(sorted(tables)[:5])}); move it aside or give --state"
                )
            done = {r["name"] for r in conn.execute("SELECT name FROM schema_migrations")}
            known = {m.name for m in MIGRATIONS}
            if unknown := done - known:
                raise StoreError(
                    f"{self.path}: written by a newer socialguard (unknown migrations: "
                    f"{', '.join(sorted(unknown))})"
                )
            return known <= done

        return self._read(read)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        done = {r["name"] for r in conn.execute("SELECT name FROM schema_migrations")}
        known = {m.name for m in MIGRATIONS}
        if unknown := done - known:
            raise StoreError(
                f"{self.path}: written by a newer socialguard (unknown migrations: "
                f"{', '.join(sorted(unknown))})"
            )
        for m in MIGRATIONS:
            if m.name in done:
                continue
            for statement in _statements(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (m.name, _ts(self._clock())),
            )

    def migrations(self) -> list[str]:
        """Names of the migrations recorded in the database, in order."""
        return self._read(
            lambda c: [
                r["name"] for r in c.execute("SELECT name FROM schema_migrations ORDER BY name")
            ]
        )

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                continue
        self._local = threading.local()
        self._identity = None  # closed: nothing to follow
        held, self._handles = self._handles, []
        for handle in held:  # after the connections: the last user's release closes the file
            handle.release()

    # -- block-page form tokens ------------------------------------------------------------------

    def form_secret(self) -> bytes:
        """The key that signs block-page form tokens, shared by every node using this store (so a
        form served by one node may be posted to another); created on first use."""

        def get(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "INSERT OR IGNORE INTO form_secret (id, secret) VALUES (1, ?)",
                (secrets.token_bytes(32),),
            )
            secret: bytes = conn.execute("SELECT secret FROM form_secret WHERE id = 1").fetchone()[
                0
            ]
            return secret

        return self._retry(get)

    def _spend_token(self, conn: sqlite3.Connection, token: FormToken | None) -> None:
        """Record a form token as used, in the caller's transaction: single use across nodes."""
        if token is None:
            return
        nonce, expires = token
        conn.execute("DELETE FROM used_form_tokens WHERE expires < ?", (_ts(self._clock()),))
        try:
            conn.execute(
                "INSERT INTO used_form_tokens (nonce, expires) VALUES (?, ?)", (nonce, _ts(expires))
            )
        except sqlite3.IntegrityError as e:
            raise TokenUsedError("this form was already used") from e

    # -- the outbox -----------------------------------------------------------------------------

    def _event(  # noqa: PLR0917 - one call per change, in the order an event is read
        self,
        conn: sqlite3.Connection,
        action: str,
        actor: Actor,
        target: str,
        reason: str,
        details: dict[str, Any],
    ) -> None:
        created = _ts(self._clock())
        conn.execute(
            "INSERT INTO admin_events"
            " (event_id, created, action, by_name, source, target, reason, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                secrets.token_hex(12),
                created,
                action,
                actor.by,
                actor.source,
                target,
                reason,
                json.dumps(details, sort_keys=True, default=str),
            ),
        )
        # the notice it raises, if any, in the same transaction (overrides/outbox.py)
        outbox.record_notice(conn, action, actor.by, actor.source, target, reason, details, created)

    def record_refusal(
        self, actor: Actor, action: str, target: str, reason: str, details: dict[str, Any]
    ) -> None:
        """An administrator's change their role refused, as an `admin_refused` event: who tried
        what (`details.attempted`), and why it was refused."""
        self._write(
            lambda conn: self._event(
                conn, "admin_refused", actor, target, reason, {**details, "attempted": action}
            )
        )

    def claim_admin_events(self, node: str, limit: int = 100) -> list[dict[str, Any]]:
        """Hand up to `limit` unclaimed events to `node`, oldest first; no other node will get
        them."""

        def claim(conn: sqlite3.Connection) -> list[AdminEvent]:
            rows = conn.execute(
                "SELECT * FROM admin_events WHERE claimed_by IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            if rows:
                conn.execute(
                    "UPDATE admin_events SET claimed_by = ?, claimed_at = ?"
                    " WHERE claimed_by IS NULL"
                    " AND seq <= ?",
                    (node, _ts(self._clock()), rows[-1]["seq"]),
                )
            return [_event_from_row(r) for r in rows]

        if not self._read(
            lambda c: c.execute(
                "SELECT 1 FROM admin_events WHERE claimed_by IS NULL LIMIT 1"
            ).fetchone()
        ):
            return []  # idle nodes poll without taking the write lock
        return [e.as_dict() for e in self._retry(claim)]

    def unconfirmed_admin_events(self, node: str, limit: int = 100) -> list[dict[str, Any]]:
        """Events handed to `node` but not yet confirmed as logged (its pump stopped between
        claiming and confirming them), oldest first, with when they were claimed."""
        rows = self._read(
            lambda c: c.execute(
                "SELECT * FROM admin_events WHERE claimed_by = ? AND confirmed_at IS NULL"
                " ORDER BY seq LIMIT ?",
                (node, limit),
            ).fetchall()
        )
        return [{**_event_from_row(r).as_dict(), "claimed_at": r["claimed_at"]} for r in rows]

    def confirm_admin_events(self, node: str, store_seqs: list[int]) -> None:
        """Record that these events of `node` are in its decision log."""
        if not store_seqs:
            return

        def confirm(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE admin_events SET confirmed_at = ? WHERE seq = ? AND claimed_by = ?",
                [(_ts(self._clock()), s, node) for s in store_seqs],
            )

        self._retry(confirm)

    def admin_events(self) -> list[AdminEvent]:
        """Every event, claimed or not (for tests and `emergency review`-style reports)."""
        return self._read(
            lambda c: [
                _event_from_row(r) for r in c.execute("SELECT * FROM admin_events ORDER BY seq")
            ]
        )

    # -- change counter and snapshot ------------------------------------------------------------

    def change_counter(self) -> int:
        row = self._retry_raw(
            lambda: (
                self._conn()
                .execute("SELECT value FROM meta WHERE key = 'change_counter'")
                .fetchone()
            )
        )
        return int(row[0])

    def active(self, now: datetime) -> ActiveOverrides:
        """Grants and emergencies not revoked/stopped and not yet ended (including scheduled
        ones)."""
        t = _ts(now)

        def read(conn: sqlite3.Connection) -> ActiveOverrides:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM grants WHERE revoked_at IS NULL AND ends > ? ORDER BY id", (t,)
                )
            ]
            grants = self._grants_by_id(conn, ids)
            emergencies = tuple(
                _emergency_from_row(r)
                for r in conn.execute(
                    "SELECT * FROM emergencies"
                    " WHERE stopped_at IS NULL AND (ends IS NULL OR ends > ?)",
                    (t,),
                )
            )
            return ActiveOverrides(
                grants,
                emergencies,
                _next_boundary(now, grants, emergencies),
                _recent_uses(conn, now - timedelta(hours=USES_WINDOW_HOURS)),
            )

        return self._read(read)

    def _grants_by_id(self, conn: sqlite3.Connection, ids: list[str]) -> tuple[Grant, ...]:
        """Grants for these ids, reading only the ones not seen before.

        A grant row never changes once written except for its revocation, which the caller's query
        already filters on; so Grant objects are cached by id and a rebuild with 10,000 grants in
        force reads 10,000 ids, not 10,000 rows. The cache keeps only the ids asked for last.
        """
        with self._cache_lock:
            cache = self._grant_cache
        missing = [i for i in ids if i not in cache]
        fresh: dict[str, Grant] = {}
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in conn.execute(f"SELECT * FROM grants WHERE id IN ({marks})", chunk):
                fresh[r["id"]] = _grant_from_row(r)
        out = tuple(cache.get(i) or fresh[i] for i in ids)
        with self._cache_lock:
            self._grant_cache = {g.id: g for g in out}
        return out

    def snapshot(self, now: datetime) -> Any:
        from socialguard.engine import Overrides

        a = self.active(now)
        return Overrides.build(a.grants, a.emergencies)

    # -- grants ---------------------------------------------------------------------------------

    def add_grant(  # noqa: PLR0917 - mirrors Grant's fields in order
        self,
        who: str,
        sites: tuple[str, ...],
        starts: datetime,
        ends: datetime,
        reason: str,
        actor: Actor,
        *,
        request_id: str | None = None,
    ) -> Grant:
        if ends <= starts:
            raise StoreError("the grant would end before it starts")
        grant = Grant(
            id=new_id("g"),
            who=who,
            sites=tuple(sites),
            starts=starts.astimezone(UTC),
            ends=ends.astimezone(UTC),
            reason=reason,
            by=actor.by,
            request_id=request_id,
        )

        def body(conn: sqlite3.Connection) -> Grant:
            self._insert_grant(conn, grant, actor)
            return grant

        return self._write(body)

    def _insert_grant(self, conn: sqlite3.Connection, grant: Grant, actor: Actor) -> None:
        conn.execute(
            "INSERT INTO grants"
            " (id, who, sites, starts, ends, reason, by_name, source, created, request_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                grant.id,
                grant.who,
                json.dumps(list(grant.sites)),
                _ts(grant.starts),
                _ts(grant.ends),
                grant.reason,
                grant.by,
                actor.source,
                _ts(self._clock()),
                grant.request_id,
            ),
        )
        self._event(
            conn,
            "grant_added",
            actor,
            grant.id,
            grant.reason,
            {
                "who": grant.who,
                "sites": list(grant.sites),
                "starts": _ts(grant.starts),
                "ends": _ts(grant.ends),
                "request_id": grant.request_id,
            },
        )

    def get_grant(self, grant_id: str) -> GrantRecord:
        row = self._read(
            lambda c: c.execute("SELECT * FROM grants WHERE id = ?", (grant_id.strip(),)).fetchone()
        )
        if row is None:
            raise NotFoundError(
                f"no grant with id {grant_id!r} (see `socialguard grant list --all`)"
            )
        return _grant_record_from_row(row)

    def list_grants(self, now: datetime, *, include_all: bool = False) -> list[GrantRecord]:
        args: tuple[str, ...] = ()
        if include_all:
            sql = "SELECT * FROM grants ORDER BY created"
        else:
            sql, args = (
                "SELECT * FROM grants WHERE revoked_at IS NULL AND ends > ? ORDER BY ends",
                (_ts(now),),
            )
        return self._read(lambda c: [_grant_record_from_row(r) for r in c.execute(sql, args)])

    def revoke_grant(self, grant_id: str, reason: str, actor: Actor) -> GrantRecord:
        def body(conn: sqlite3.Connection) -> GrantRecord:
            row = conn.execute("SELECT * FROM grants WHERE id = ?", (grant_id.strip(),)).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no grant with id {grant_id!r} (see `socialguard grant list --all`)"
                )
            if row["revoked_at"] is not None:
                raise StateError(f"grant {row['id']} was already revoked at {row['revoked_at']}")
            now = _ts(self._clock())
            conn.execute(
                "UPDATE grants SET revoked_at = ?, revoked_by = ?, revoke_reason = ? WHERE id = ?",
                (now, actor.by, reason, row["id"]),
            )
            self._event(
                conn,
                "grant_revoked",
                actor,
                row["id"],
                reason,
                {"who": row["who"], "sites": json.loads(row["sites"])},
            )
            return _grant_record_from_row(
                conn.execute("SELECT * FROM grants WHERE id = ?", (row["id"],)).fetchone()
            )

        return self._write(body)

    # -- emergencies ----------------------------------------------------------------------------

    def start_emergency(
        self,
        scope: str,
        ends: datetime | None,
        reason: str,
        actor: Actor,
        *,
        sites: tuple[str, ...] = (),
    ) -> Emergency:
        """An administrator's emergency for `scope`; `sites` (checked by overrides.parse) limits
        it to those sites, each domain standing for its whole service; empty means every site."""
        now = self._clock()
        emergency = Emergency(
            id=new_id("e"),
            scope=scope,
            starts=now,
            ends=None if ends is None else ends.astimezone(UTC),
            reason=reason,
            by=actor.by,
            sites=tuple(sites),
        )

        def body(conn: sqlite3.Connection) -> Emergency:
            self._insert_emergency(conn, emergency, actor)
            details: dict[str, Any] = {"scope": scope, "ends": None if ends is None else _ts(ends)}
            if sites:
                details["sites"] = list(sites)
            self._event(conn, "emergency_started", actor, emergency.id, reason, details)
            return emergency

        return self._write(body)

    def _insert_emergency(
        self,
        conn: sqlite3.Connection,
        e: Emergency,
        actor: Actor,
        *,
        person: str | None = None,
        url: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO emergencies"
            " (id, scope, sites, starts, ends, reason, by_name, source, created,"
            " self_declared, person, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                e.id,
                e.scope,
                json.dumps(list(e.sites)),
                _ts(e.starts),
                None if e.ends is None else _ts(e.ends),
                e.reason,
                e.by,
                actor.source,
                _ts(self._clock()),
                int(e.self_declared),
                person,
                url,
            ),
        )

    def stop_emergencies(
        self, ids: list[str] | None, reason: str, actor: Actor
    ) -> list[EmergencyRecord]:
        """Stop the given emergencies, or (ids None) every administrator-declared one in force."""

        def body(conn: sqlite3.Connection) -> list[EmergencyRecord]:
            now = self._clock()
            t = _ts(now)
            if ids is None:
                rows = conn.execute(
                    "SELECT * FROM emergencies WHERE self_declared = 0 AND stopped_at IS NULL"
                    " AND (ends IS NULL OR ends > ?) ORDER BY starts",
                    (t,),
                ).fetchall()
                if not rows:
                    raise StateError("no administrator-declared emergency is in force")
            else:
                rows = []
                for i in ids:
                    row = conn.execute(
                        "SELECT * FROM emergencies WHERE id = ?", (i.strip(),)
                    ).fetchone()
                    if row is None:
                        raise NotFoundError(
                            f"no emergency with id {i!r} (see `socialguard emergency status`)"
                        )
                    record = _emergency_record_from_row(row)
                    if record.status(now) != "active":
                        raise StateError(
                            f"emergency {record.emergency.id} is already {record.status(now)}"
                        )
                    rows.append(row)
            out = []
            for row in rows:
                conn.execute(
                    "UPDATE emergencies SET stopped_at = ?, stopped_by = ?,"
                    " ends = CASE WHEN ends IS NULL OR ends > ? THEN ? ELSE ends END WHERE id = ?",
                    (t, actor.by, t, t, row["id"]),
                )
                self._event(
                    conn,
                    "emergency_stopped",
                    actor,
                    row["id"],
                    reason,
                    {"scope": row["scope"], "self_declared": bool(row["self_declared"])},
                )
                out.append(
                    _emergency_record_from_row(
                        conn.execute(
                            "SELECT * FROM emergencies WHERE id = ?", (row["id"],)
                        ).fetchone()
                    )
                )
            return out

        return self._write(body)

    def get_emergency(self, emergency_id: str) -> EmergencyRecord:
        row = self._read(
            lambda c: c.execute(
                "SELECT * FROM emergencies WHERE id = ?", (emergency_id.strip(),)
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(
                f"no emergency with id {emergency_id!r} (see `socialguard emergency status`)"
            )
        return _emergency_record_from_row(row)

    def list_emergencies(
        self, now: datetime, *, include_all: bool = False
    ) -> list[EmergencyRecord]:
        args: tuple[str, ...] = ()
        if include_all:
            sql = "SELECT * FROM emergencies ORDER BY created"
        else:
            sql, args = (
                "SELECT * FROM emergencies WHERE stopped_at IS NULL AND (ends IS NULL OR ends > ?)"
                " ORDER BY starts",
                (_ts(now),),
            )
        return self._read(lambda c: [_emergency_record_from_row(r) for r in c.execute(sql, args)])

    def declare_self_emergency(
        self,
        *,
        scope: str,
        person: str,
        site: str,
        url: str,
        reason: str,
        actor: Actor,
        minutes: int,
        per_day: int,
        day_start: datetime,
        token: FormToken | None = None,
        allowances: Sequence[Allowance] = (),
        groups: Sequence[str] = (),
    ) -> EmergencyRecord:
        """A person's own emergency from the block page: counted against the daily limits
        atomically (`allowances`, see engine/limits.py; by default `per_day` for `person`).
        `groups`: the person's, for whom it is routed to."""
        if minutes <= 0:
            raise StoreError(
                "overrides.emergency_minutes is zero: self-declared emergencies are off"
            )
        spends = allowances or (Allowance(person, per_day, "emergency_per_day"),)

        def body(conn: sqlite3.Connection) -> EmergencyRecord:
            used = _check_allowances(conn, _SELF_EMERGENCIES_SINCE, spends, day_start)
            self._spend_token(conn, token)
            now = self._clock()
            e = Emergency(
                id=new_id("e"),
                scope=scope,
                starts=now,
                ends=now + timedelta(minutes=minutes),
                reason=reason,
                by=actor.by,
                sites=(site,),
                self_declared=True,
            )
            self._insert_emergency(conn, e, actor, person=person, url=url)
            self._event(
                conn,
                "emergency_self_declared",
                actor,
                e.id,
                reason,
                {
                    "scope": scope,
                    "site": site,
                    "url": url,
                    "ends": _ts(e.ends or now),
                    "used_today": used + 1,
                    "per_day": per_day,
                    **({"groups": sorted(groups)} if groups else {}),
                },
            )
            return _emergency_record_from_row(
                conn.execute("SELECT * FROM emergencies WHERE id = ?", (e.id,)).fetchone()
            )

        return self._write(body)

    def pending_reviews(self) -> list[EmergencyRecord]:
        return self._read(
            lambda c: [
                _emergency_record_from_row(r)
                for r in c.execute(
                    "SELECT * FROM emergencies"
                    " WHERE self_declared = 1 AND acked_at IS NULL ORDER BY starts"
                )
            ]
        )

    def ack_emergency(self, emergency_id: str, note: str | None, actor: Actor) -> EmergencyRecord:
        def body(conn: sqlite3.Connection) -> EmergencyRecord:
            row = conn.execute(
                "SELECT * FROM emergencies WHERE id = ?", (emergency_id.strip(),)
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no emergency with id {emergency_id!r} (see `socialguard emergency review`)"
                )
            if not row["self_declared"]:
                raise StateError(
                    f"emergency {row['id']} was declared by an administrator; nothing to review"
                )
            if row["acked_at"] is not None:
                raise StateError(
                    f"emergency {row['id']} was already acknowledged by {row['acked_by']}"
                )
            conn.execute(
                "UPDATE emergencies SET acked_at = ?, acked_by = ?, ack_note = ? WHERE id = ?",
                (_ts(self._clock()), actor.by, note, row["id"]),
            )
            self._event(
                conn,
                "emergency_acknowledged",
                actor,
                row["id"],
                note or "",
                {"person": row["person"], "sites": json.loads(row["sites"])},
            )
            return _emergency_record_from_row(
                conn.execute("SELECT * FROM emergencies WHERE id = ?", (row["id"],)).fetchone()
            )

        return self._write(body)

    # -- access requests ------------------------------------------------------------------------

    def file_request(
        self,
        *,
        who: str,
        site: str,
        url: str,
        rule_id: str | None,
        decision_id: str | None,
        reason: str,
        client_ip: str,
        actor: Actor,
        token: FormToken | None = None,
        allowances: Sequence[Allowance] = (),
        day_start: datetime | None = None,
        groups: Sequence[str] = (),
    ) -> AccessRequest:
        """A request from the block page; with `allowances`, counted against the daily limits
        (since `day_start`) atomically. `groups`: the requester's, for whom it is routed to."""
        req = AccessRequest(
            id=new_id("r"),
            who=who,
            site=site,
            url=url,
            rule_id=rule_id,
            decision_id=decision_id,
            reason=reason,
            created=self._clock(),
            client_ip=client_ip,
        )

        def body(conn: sqlite3.Connection) -> AccessRequest:
            if allowances:
                _check_allowances(conn, _REQUESTS_SINCE, allowances, day_start or req.created)
            self._spend_token(conn, token)
            conn.execute(
                "INSERT INTO access_requests"
                " (id, who, site, url, rule_id, decision_id, reason, created,"
                " client_ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (req.id, who, site, url, rule_id, decision_id, reason, _ts(req.created), client_ip),
            )
            self._event(
                conn,
                "access_requested",
                actor,
                req.id,
                reason,
                {
                    "who": who,
                    "site": site,
                    "url": url,
                    "rule_id": rule_id,
                    "decision_id": decision_id,
                    **({"groups": sorted(groups)} if groups else {}),
                },
            )
            return req

        return self._write(body)

    def get_request(self, request_id: str) -> AccessRequest:
        row = self._read(
            lambda c: c.execute(
                "SELECT * FROM access_requests WHERE id = ?", (request_id.strip(),)
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(
                f"no access request with id {request_id!r} (see `socialguard grant requests`)"
            )
        return _request_from_row(row)

    def allowance_left(self, kind: str, spends: Sequence[Allowance], day_start: datetime) -> bool:
        """Whether each of `spends` has room today for one more `kind` ("emergency" or
        "requests"): read only, so the block page offers no form the store would refuse. The
        write still checks again in its own transaction."""
        counted = _SELF_EMERGENCIES_SINCE if kind == "emergency" else _REQUESTS_SINCE

        def room(conn: sqlite3.Connection) -> bool:
            try:
                _check_allowances(conn, counted, spends, day_start)
            except LimitReachedError:
                return False
            return True

        return self._read(room)

    def list_requests(self, *, include_all: bool = False) -> list[AccessRequest]:
        where = "" if include_all else "WHERE status = 'pending'"
        return self._read(
            lambda c: [
                _request_from_row(r)
                for r in c.execute(f"SELECT * FROM access_requests {where} ORDER BY created")
            ]
        )

    def _pending_request(self, conn: sqlite3.Connection, request_id: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM access_requests WHERE id = ?", (request_id.strip(),)
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no access request with id {request_id!r} (see `socialguard grant requests`)"
            )
        if row["status"] != "pending":
            raise StateError(
                f"request {row['id']} was already {row['status']} by {row['decided_by']}"
            )
        return row

    def approve_request(
        self, request_id: str, ends: datetime, actor: Actor, *, note: str | None = None
    ) -> tuple[AccessRequest, Grant]:
        def body(conn: sqlite3.Connection) -> tuple[AccessRequest, Grant]:
            row = self._pending_request(conn, request_id)
            now = self._clock()
            if ends <= now:
                raise StoreError("the end is in the past")
            reason = note or f"access request {row['id']}: {row['reason']}"
            grant = Grant(
                id=new_id("g"),
                who=row["who"],
                sites=(row["site"],),
                starts=now,
                ends=ends.astimezone(UTC),
                reason=reason,
                by=actor.by,
                request_id=row["id"],
            )
            self._insert_grant(conn, grant, actor)
            conn.execute(
                "UPDATE access_requests SET status = 'approved', decided_at = ?, decided_by = ?,"
                " decision_note = ?, grant_id = ? WHERE id = ?",
                (_ts(now), actor.by, note, grant.id, row["id"]),
            )
            self._event(
                conn,
                "access_approved",
                actor,
                row["id"],
                reason,
                {
                    "who": row["who"],
                    "site": row["site"],
                    "grant_id": grant.id,
                    "ends": _ts(grant.ends),
                },
            )
            req = _request_from_row(
                conn.execute("SELECT * FROM access_requests WHERE id = ?", (row["id"],)).fetchone()
            )
            return req, grant

        return self._write(body)

    def recent_answers(self, since: datetime) -> list[RequestAnswer]:
        """Access requests filed since `since`, with their grant's end, for the block page."""
        rows = self._read(
            lambda c: c.execute(
                "SELECT r.id, r.who, r.site, r.status, r.created, r.decided_at, r.decision_note,"
                " g.ends, g.revoked_at FROM access_requests r"
                " LEFT JOIN grants g ON g.id = r.grant_id WHERE r.created >= ?"
                " ORDER BY r.created, r.rowid",
                (_ts(since),),
            ).fetchall()
        )
        return [
            RequestAnswer(
                id=r["id"],
                who=r["who"],
                site=r["site"],
                status=r["status"],
                filed=_req_dt(r["created"]),
                decided_at=_dt(r["decided_at"]),
                note=r["decision_note"],
                ends=_dt(r["ends"]),
                revoked=r["revoked_at"] is not None,
            )
            for r in rows
        ]

    def deny_request(self, request_id: str, reason: str, actor: Actor) -> AccessRequest:
        def body(conn: sqlite3.Connection) -> AccessRequest:
            row = self._pending_request(conn, request_id)
            conn.execute(
                "UPDATE access_requests SET status = 'denied', decided_at = ?, decided_by = ?,"
                " decision_note = ? WHERE id = ?",
                (_ts(self._clock()), actor.by, reason, row["id"]),
            )
            self._event(
                conn,
                "access_denied",
                actor,
                row["id"],
                reason,
                {"who": row["who"], "site": row["site"]},
            )
            return _request_from_row(
                conn.execute("SELECT * FROM access_requests WHERE id = ?", (row["id"],)).fetchone()
            )

        return self._write(body)


# -- what is wrong with a file, in words --------------------------------------------------------


def _os_reason(e: OSError) -> str:
    reasons = {
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied (read-only to this user)",
        errno.EPERM: "permission denied (read-only to this user)",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENOENT: "missing",
    }
    return reasons.get(e.errno or 0, e.strerror or str(e))


def _header_size(header: bytes) -> int | None:
    """The database size its 100-byte header records, when that figure is valid (SQLite's file
    format, 1.3: the page count at 28 counts only if the change counter at 24 equals the
    version-valid-for number at 92)."""
    if len(header) < 100:
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if not pages or header[24:28] != header[92:96]:
        return None
    return page_size * pages


def _directory_reason(directory: Path) -> str | None:
    """Why SQLite could not open a file in `directory` ("unable to open database file")."""
    if not directory.is_dir():
        return f"{directory} is missing"
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only file system"
    except OSError:
        pass
    if not os.access(directory, os.W_OK):
        return f"{directory} is read-only to this user"
    return None


# -- rows to records -------------------------------------------------------------------------------


# What a day's allowance counts: self-declared emergencies and access requests since a time, by
# the person key (exact) or by every person key with a prefix (shared).
_SELF_EMERGENCIES_SINCE = (
    "SELECT COUNT(*) FROM emergencies WHERE self_declared = 1 AND starts >= ? AND ",
    "person",
)
_REQUESTS_SINCE = ("SELECT COUNT(*) FROM access_requests WHERE created >= ? AND ", "who")


def _recent_uses(conn: sqlite3.Connection, since: datetime) -> RecentUses:
    """Who used which block-page form since `since`, for the snapshot (see RecentUses): the
    rows `_check_allowances` counts, read once per rebuild instead of once per block page."""
    by_kind: dict[str, dict[str, list[datetime]]] = {"emergency": {}, "requests": {}}
    queries = (
        (
            "emergency",
            "SELECT person, starts FROM emergencies WHERE self_declared = 1 AND starts >= ?",
        ),
        ("requests", "SELECT who, created FROM access_requests WHERE created >= ?"),
    )
    for kind, sql in queries:
        for key, when in conn.execute(sql, (_ts(since),)):
            if key is not None:
                by_kind[kind].setdefault(str(key), []).append(_req_dt(when))
    return RecentUses({k: {p: tuple(ts) for p, ts in v.items()} for k, v in by_kind.items()})


def _check_allowances(
    conn: sqlite3.Connection,
    counted: tuple[str, str],
    allowances: Sequence[Allowance],
    since: datetime,
) -> int:
    """Raise LimitReachedError for the first allowance with no room left today; else how many
    the first (the person's own) has used. Runs in the caller's write transaction, so two
    submissions cannot both take the last one."""
    query, column = counted
    first = 0
    for i, a in enumerate(allowances):
        args: tuple[str | int, ...]
        if a.shared:
            sql, args = f"{query}substr({column}, 1, ?) = ?", (_ts(since), len(a.key), a.key)
        else:
            sql, args = f"{query}{column} = ?", (_ts(since), a.key)
        used = int(conn.execute(sql, args).fetchone()[0])
        if used >= a.per_day:
            whose = "unidentified addresses together" if a.shared else a.key
            raise LimitReachedError(f"{whose} have used {used} of {a.per_day} today ({a.name})", a)
        if i == 0:
            first = used
    return first


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (sqlite3.executescript would commit our transaction)."""
    out, buf = [], []
    for line in sql.splitlines():
        buf.append(line.split("--", 1)[0])
        if line.split("--", 1)[0].rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    if "".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out


def _next_boundary(
    now: datetime, grants: Iterable[Grant], emergencies: Iterable[Emergency]
) -> datetime | None:
    moments: list[datetime] = []
    for g in grants:
        moments.extend(m for m in (g.starts, g.ends) if m > now)
    for e in emergencies:
        moments.extend(m for m in (e.starts, e.ends) if m is not None and m > now)
    return min(moments, default=None)


def _grant_from_row(r: sqlite3.Row) -> Grant:
    return Grant(
        id=r["id"],
        who=r["who"],
        sites=tuple(json.loads(r["sites"])),
        starts=_req_dt(r["starts"]),
        ends=_req_dt(r["ends"]),
        reason=r["reason"],
        by=r["by_name"],
        request_id=r["request_id"],
    )


def _grant_record_from_row(r: sqlite3.Row) -> GrantRecord:
    return GrantRecord(
        grant=_grant_from_row(r),
        created=_req_dt(r["created"]),
        source=r["source"],
        revoked_at=_dt(r["revoked_at"]),
        revoked_by=r["revoked_by"],
        revoke_reason=r["revoke_reason"],
    )


def _emergency_from_row(r: sqlite3.Row) -> Emergency:
    return Emergency(
        id=r["id"],
        scope=r["scope"],
        starts=_req_dt(r["starts"]),
        ends=_dt(r["ends"]),
        reason=r["reason"],
        by=r["by_name"],
        sites=tuple(json.loads(r["sites"])),
        self_declared=bool(r["self_declared"]),
    )


def _emergency_record_from_row(r: sqlite3.Row) -> EmergencyRecord:
    return EmergencyRecord(
        emergency=_emergency_from_row(r),
        created=_req_dt(r["created"]),
        source=r["source"],
        person=r["person"],
        url=r["url"],
        stopped_at=_dt(r["stopped_at"]),
        stopped_by=r["stopped_by"],
        acked_at=_dt(r["acked_at"]),
        acked_by=r["acked_by"],
        ack_note=r["ack_note"],
    )


def _request_from_row(r: sqlite3.Row) -> AccessRequest:
    return AccessRequest(
        id=r["id"],
        who=r["who"],
        site=r["site"],
        url=r["url"],
        rule_id=r["rule_id"],
        decision_id=r["decision_id"],
        reason=r["reason"],
        created=_req_dt(r["created"]),
        client_ip=r["client_ip"],
        status=r["status"],
        decided_at=_dt(r["decided_at"]),
        decided_by=r["decided_by"],
        decision_note=r["decision_note"],
        grant_id=r["grant_id"],
    )


def _event_from_row(r: sqlite3.Row) -> AdminEvent:
    return AdminEvent(
        seq=r["seq"],
        event_id=r["event_id"] or f"store-seq-{r['seq']}",
        created=_req_dt(r["created"]),
        action=r["action"],
        by=r["by_name"],
        source=r["source"],
        target=r["target"],
        reason=r["reason"],
        details=json.loads(r["details"]),
    )
