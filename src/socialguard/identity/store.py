"""Where the bindings sources report live: `<state>/identity.db`, a SQLite file of its own.

Why not a table in the overrides store: bindings are not overrides. They change thousands of times a
second at the start of a school day (RADIUS), they need no audit chain or outbox, and every write to
the overrides store bumps the change counter the proxy's overrides refresher polls, which would
rebuild the grants snapshot for nothing. A separate file keeps those writes off the store the
administrators' commands use and leaves `overrides/sqlite.py` alone.

What it is for: `socialguard who ADDRESS` reads what the proxy knows, and a restarted proxy keeps
the people its RADIUS source had bound (a session does not restart with the proxy; its Stop will
come). DHCP leases are not stored here: the lease file is their store.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from socialguard.engine.identity import Binding

__all__ = ["BINDINGS_DB", "BindingStore"]

BINDINGS_DB = "identity.db"

_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_bindings",
        """
        CREATE TABLE bindings (
            address TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            user TEXT,
            groups TEXT NOT NULL DEFAULT '[]',
            mac TEXT,
            start REAL NOT NULL,
            until REAL,
            session TEXT,
            nas TEXT
        );
        """,
    ),
)


class BindingStore:
    """The bindings table, written by the sources' threads, read by the CLI and at start."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        if read_only:  # the CLI: never creates, migrates or writes what the proxy owns
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        db = self._db
        db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {r[0] for r in db.execute("SELECT name FROM migrations")}
        for name, sql in _MIGRATIONS:
            if name in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(sql)
                db.execute("INSERT INTO migrations VALUES (?, strftime('%s','now'))", (name,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @classmethod
    def open_read_only(cls, path: Path) -> BindingStore | None:
        """The store as the CLI reads it, or None if no proxy has written one there."""
        if not path.is_file():
            return None
        return cls(path, read_only=True)

    def write(
        self,
        changes: Mapping[str, Binding | None],
        sessions: Mapping[str, tuple[str | None, str | None]],
    ) -> None:
        """Apply one burst of binding changes in one transaction."""
        upserts = []
        deletes = []
        for address, b in changes.items():
            if b is None:
                deletes.append((address,))
                continue
            session, nas = sessions.get(address, (None, None))
            upserts.append(
                (
                    address,
                    b.source,
                    b.user,
                    json.dumps(sorted(b.groups)),
                    b.mac,
                    b.start,
                    b.until,
                    session,
                    nas,
                )
            )
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM bindings WHERE address = ?", deletes)
                db.executemany(
                    "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", upserts
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def load(self, now: float) -> list[tuple[Binding, str | None, str | None]]:
        """Bindings still in force at `now`, with their session and controller."""
        with self._lock:
            rows = self._db.execute(
                "SELECT address, source, user, groups, mac, start, until, session, nas "
                "FROM bindings WHERE until IS NULL OR until > ?",
                (now,),
            ).fetchall()
        return [
            (
                Binding(a, src, user, frozenset(json.loads(groups)), mac, start, until),
                session,
                nas,
            )
            for a, src, user, groups, mac, start, until, session, nas in rows
        ]

    def find(self, address: str, now: float) -> Binding | None:
        """The binding of `address` at `now`, or of the longest bound IPv6 prefix holding it."""
        with self._lock:
            row = self._db.execute(
                "SELECT address, source, user, groups, mac, start, until FROM bindings "
                "WHERE address = ? AND (until IS NULL OR until > ?)",
                (address, now),
            ).fetchone()
            if row is None and ":" in address:
                prefixes = self._db.execute(
                    "SELECT address, source, user, groups, mac, start, until FROM bindings "
                    "WHERE address LIKE '%/%' AND (until IS NULL OR until > ?)",
                    (now,),
                ).fetchall()
                row = _longest_prefix_holding(address, prefixes)
        if row is None:
            return None
        a, src, user, groups, mac, start, until = row
        return Binding(a, src, user, frozenset(json.loads(groups)), mac, start, until)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _longest_prefix_holding(address: str, rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    try:
        addr = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    best: tuple[int, tuple[Any, ...]] | None = None
    for row in rows:
        try:
            network = ipaddress.IPv6Network(row[0], strict=False)
        except ValueError:
            continue
        if addr in network and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, row)
    return best[1] if best is not None else None
