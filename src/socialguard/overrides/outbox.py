"""The notifications outbox in the SQLite store: notices written with the change that causes them,
and their deliveries, claimed by one delivery worker at a time.

Two tables (migration `0004_outbox`): `outbox` holds one row per notice; `outbox_deliveries` one
row per (notice, channel, recipient), made when a worker routes the notice against the rules in
force. The UNIQUE key of a delivery, routing in the write transaction (`BEGIN IMMEDIATE`: one
worker at a time) and claiming with a lease make it one delivery per notice and recipient, however
many proxy workers share the store. A worker that dies mid-send leaves its claim; the next start
of the same node releases it (`release`), another node takes it once the lease has run out.

A notice is written in the same transaction as its change (`record_notice`, called by the store's
`_event`), so a channel that is down, or a process that dies, loses nothing. Notices raised
elsewhere (a rules file rejected, a grant about to end) are inserted on their own with a `dedupe`
key, so several workers raising the same one make one.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from socialguard.engine.notifications import Notice, Target

# The admin event a store change writes → the notice it raises.
NOTICE_OF_ACTION = {
    "access_requested": "request_filed",
    "emergency_self_declared": "emergency_declared",
    "access_approved": "request_approved",
    "access_denied": "request_denied",
}

MIGRATION_SQL = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,          -- the request, grant or emergency id; the rules file
    person TEXT,                    -- the person key it concerns (user:NAME, device:ID, ip:ADDR)
    groups TEXT NOT NULL,           -- JSON array of the policy groups it concerns
    facts TEXT NOT NULL,            -- JSON object: site, reason, by, ends, ...
    created TEXT NOT NULL,
    dedupe TEXT UNIQUE,             -- raised once: grant_ending:ID, rules_rejected:DIGEST
    routed_at TEXT
);
CREATE INDEX outbox_unrouted ON outbox (seq) WHERE routed_at IS NULL;
CREATE INDEX outbox_by_subject ON outbox (subject, kind);
CREATE TABLE outbox_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL REFERENCES outbox (seq),
    channel TEXT NOT NULL,          -- email | webhook
    recipient TEXT NOT NULL,        -- an address, or a webhook's name
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | abandoned
    attempts INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    next_attempt TEXT NOT NULL,
    claimed_by TEXT,
    lease_until TEXT,
    last_error TEXT,
    delivered_at TEXT,
    UNIQUE (event_seq, channel, recipient)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_attempt) WHERE status = 'pending';
"""


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _insert(  # noqa: PLR0917 - the row's columns, in order
    conn: sqlite3.Connection,
    kind: str,
    subject: str,
    person: str | None,
    groups: Iterable[str],
    facts: dict[str, Any],
    created: str,
    dedupe: str | None = None,
) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO outbox"
        " (event_id, kind, subject, person, groups, facts, created, dedupe)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            secrets.token_hex(12),
            kind,
            subject,
            person,
            json.dumps(sorted(set(groups))),
            json.dumps(facts, sort_keys=True, default=str),
            created,
            dedupe,
        ),
    )
    return cur.rowcount == 1


def _groups_of(conn: sqlite3.Connection, subject: str, kind: str) -> list[str]:
    row = conn.execute(
        "SELECT groups FROM outbox WHERE subject = ? AND kind = ? ORDER BY seq LIMIT 1",
        (subject, kind),
    ).fetchone()
    return list(json.loads(row[0])) if row else []


def record_notice(  # noqa: PLR0917 - the admin event's fields, as the store's _event has them
    conn: sqlite3.Connection,
    action: str,
    by: str,
    source: str,
    target: str,
    reason: str,
    details: dict[str, Any],
    created: str,
) -> None:
    """The notice a store change raises, if any, in the change's own transaction."""
    kind = NOTICE_OF_ACTION.get(action)
    if kind is None:
        return
    facts: dict[str, Any] = {k: v for k, v in details.items() if k != "groups"}
    facts.update(reason=reason, by=by, source=source, at=created)
    groups = list(details.get("groups") or ())
    if kind == "request_filed":
        person = details.get("who")
        facts["request_id"] = target
    elif kind == "emergency_declared":
        person = by  # the person key of whoever declared it from the block page
        facts["emergency_id"] = target
    else:  # the answer to a request: it concerns the groups the request did
        person = details.get("who")
        facts["request_id"] = target
        groups = _groups_of(conn, target, "request_filed")
    _insert(conn, kind, target, person, groups, facts, created)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One claimed delivery: the notice and whom it goes to."""

    id: int
    event_id: str
    target: Target
    notice: Notice
    attempts: int
    created: datetime  # when the notice was raised


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending deliveries of one channel (`email`, `webhook:NAME`) and the oldest's notice
    time."""

    channel: str
    pending: int
    oldest: datetime | None


def _notice(row: sqlite3.Row) -> Notice:
    return Notice(
        kind=row["kind"],
        groups=tuple(json.loads(row["groups"])),
        person=row["person"],
        facts=json.loads(row["facts"]),
    )


class SqliteOutbox:
    """The outbox of one SqliteStore (uses its connections, retries and write lock)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    # -- raising notices ----------------------------------------------------------------------

    def raise_notice(
        self,
        kind: str,
        subject: str,
        *,
        person: str | None = None,
        groups: Iterable[str] = (),
        facts: dict[str, Any] | None = None,
        dedupe: str | None = None,
        now: datetime,
    ) -> bool:
        """A notice raised outside a store change (a rules file rejected); False when one with
        the same `dedupe` key was raised already (by this worker or another)."""
        groups = tuple(groups)
        return bool(
            self._store._retry(
                lambda c: _insert(
                    c, kind, subject, person, groups, dict(facts or {}), _ts(now), dedupe
                )
            )
        )

    def raise_ending(self, now: datetime, lead: timedelta) -> int:
        """Raise `grant_ending` / `emergency_ending` once for each grant or emergency in force
        that ends within `lead` of `now` (and lasts longer than `lead`: a ten-minute grant is not
        announced as ending at its start). Returns how many were new."""
        t, until = _ts(now), _ts(now + lead)

        def raise_them(conn: sqlite3.Connection) -> int:
            n = 0
            for r in conn.execute(
                "SELECT * FROM grants WHERE revoked_at IS NULL AND ends > ? AND ends <= ?"
                " AND starts <= ?",
                (t, until, t),
            ).fetchall():
                if _lasts(r["starts"], r["ends"]) <= lead:
                    continue
                who = r["who"]
                groups = [who.split(":", 1)[1]] if who.startswith("group:") else []
                if r["request_id"]:
                    groups += _groups_of(conn, r["request_id"], "request_filed")
                facts = {
                    "grant_id": r["id"],
                    "who": who,
                    "sites": json.loads(r["sites"]),
                    "ends": r["ends"],
                    "by": r["by_name"],
                    "reason": r["reason"],
                    "request_id": r["request_id"],
                }
                person = None if who.startswith("group:") else who
                n += _insert(
                    conn, "grant_ending", r["id"], person, groups, facts, t, f"ending:{r['id']}"
                )
            for r in conn.execute(
                "SELECT * FROM emergencies WHERE stopped_at IS NULL AND ends IS NOT NULL"
                " AND ends > ? AND ends <= ? AND starts <= ?",
                (t, until, t),
            ).fetchall():
                if _lasts(r["starts"], r["ends"]) <= lead:
                    continue
                scope = r["scope"]
                groups = [scope.split(":", 1)[1]] if scope.startswith("group:") else []
                if r["self_declared"]:
                    groups += _groups_of(conn, r["id"], "emergency_declared")
                facts = {
                    "emergency_id": r["id"],
                    "scope": scope,
                    "sites": json.loads(r["sites"]),
                    "ends": r["ends"],
                    "by": r["by_name"],
                    "reason": r["reason"],
                    "self_declared": bool(r["self_declared"]),
                }
                n += _insert(
                    conn, "emergency_ending", r["id"], r["person"], groups, facts, t,
                    f"ending:{r['id']}",
                )  # fmt: skip
            return n

        return int(self._store._retry(raise_them))

    # -- routing and delivering ---------------------------------------------------------------

    def route_new(
        self, router: Callable[[Notice], list[Target]], now: datetime, limit: int = 100
    ) -> int:
        """Give each notice not yet routed its deliveries (one per target, due now); one worker
        at a time, so a notice is routed once. Returns how many notices were routed."""
        if not self._store._read(
            lambda c: c.execute("SELECT 1 FROM outbox WHERE routed_at IS NULL LIMIT 1").fetchone()
        ):
            return 0  # idle workers poll without taking the write lock

        def route(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT * FROM outbox WHERE routed_at IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            t = _ts(now)
            for row in rows:
                for target in router(_notice(row)):
                    conn.execute(
                        "INSERT OR IGNORE INTO outbox_deliveries"
                        " (event_seq, channel, recipient, created, next_attempt)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (row["seq"], target.channel, target.recipient, t, t),
                    )
                conn.execute("UPDATE outbox SET routed_at = ? WHERE seq = ?", (t, row["seq"]))
            return len(rows)

        return int(self._store._retry(route))

    def unrouted_people(self, limit: int = 100) -> list[tuple[str, str]]:
        """(kind, person) of the notices `route_new` will route next (a read: the worker looks
        the people's addresses up before it takes the write lock)."""
        rows = self._store._read(
            lambda c: c.execute(
                "SELECT kind, person FROM outbox WHERE routed_at IS NULL AND person IS NOT NULL"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def claim_due(
        self, node: str, now: datetime, lease: timedelta, limit: int = 20
    ) -> list[Delivery]:
        """Deliveries due at `now`, claimed for `node` until `now + lease`; no other worker gets
        them meanwhile."""
        t = _ts(now)
        due_sql = (
            "FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq"
            " WHERE d.status = 'pending' AND d.next_attempt <= ?"
            " AND (d.claimed_by IS NULL OR d.lease_until < ?)"
        )
        if not self._store._read(
            lambda c: c.execute(f"SELECT 1 {due_sql} LIMIT 1", (t, t)).fetchone()
        ):
            return []

        def claim(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT d.id, d.channel, d.recipient, d.attempts, o.event_id, o.kind, o.groups,"
                f" o.person, o.facts, o.created {due_sql} ORDER BY d.next_attempt, d.id LIMIT ?",
                (t, t, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox_deliveries SET claimed_by = ?, lease_until = ? WHERE id = ?",
                [(node, _ts(now + lease), r["id"]) for r in rows],
            )
            return [
                Delivery(
                    id=r["id"],
                    event_id=r["event_id"],
                    target=Target(r["channel"], r["recipient"]),
                    notice=_notice(r),
                    attempts=r["attempts"],
                    created=datetime.fromisoformat(r["created"]),
                )
                for r in rows
            ]

        result: list[Delivery] = self._store._retry(claim)
        return result

    def delivered(self, delivery_id: int, node: str, now: datetime) -> None:
        self._store._retry(
            lambda c: c.execute(
                "UPDATE outbox_deliveries SET status = 'delivered', delivered_at = ?,"
                " attempts = attempts + 1, claimed_by = NULL, lease_until = NULL, last_error = NULL"
                " WHERE id = ? AND claimed_by = ?",
                (_ts(now), delivery_id, node),
            )
        )

    def failed(self, delivery_id: int, node: str, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt: due again at `retry_at`, or abandoned (None)."""
        status = "pending" if retry_at is not None else "abandoned"
        self._store._retry(
            lambda c: c.execute(
                "UPDATE outbox_deliveries SET status = ?, attempts = attempts + 1,"
                " last_error = ?, next_attempt = COALESCE(?, next_attempt), claimed_by = NULL,"
                " lease_until = NULL WHERE id = ? AND claimed_by = ?",
                (
                    status,
                    error[:500],
                    None if retry_at is None else _ts(retry_at),
                    delivery_id,
                    node,
                ),
            )
        )

    def release(self, node: str) -> int:
        """Hand back what `node` claimed and never finished (its previous process died): a
        restart resumes at once instead of waiting for the lease."""
        return int(
            self._store._retry(
                lambda c: (
                    c.execute(
                        "UPDATE outbox_deliveries SET claimed_by = NULL, lease_until = NULL"
                        " WHERE claimed_by = ? AND status = 'pending'",
                        (node,),
                    ).rowcount
                )
            )
        )

    def prune(self, before: datetime) -> int:
        """Forget notices raised before `before` whose deliveries are all finished (delivered or
        abandoned), so the outbox stays bounded; the decision log keeps the changes themselves."""
        t = _ts(before)

        def prune(conn: sqlite3.Connection) -> int:
            old = (
                "SELECT seq FROM outbox WHERE created < ? AND routed_at IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM outbox_deliveries p"
                " WHERE p.event_seq = outbox.seq AND p.status = 'pending')"
            )
            conn.execute(f"DELETE FROM outbox_deliveries WHERE event_seq IN ({old})", (t,))
            return int(conn.execute(f"DELETE FROM outbox WHERE seq IN ({old})", (t,)).rowcount)

        return int(self._store._retry(prune))

    # -- reading ------------------------------------------------------------------------------

    def backlog(self) -> list[Backlog]:
        """Pending deliveries by channel (`email`, `webhook:NAME`), with the oldest notice."""
        rows = self._store._read(
            lambda c: c.execute(
                "SELECT d.channel, d.recipient, COUNT(*) AS n, MIN(o.created) AS oldest"
                " FROM outbox_deliveries d JOIN outbox o ON o.seq = d.event_seq"
                " WHERE d.status = 'pending' GROUP BY d.channel,"
                " CASE d.channel WHEN 'webhook' THEN d.recipient ELSE '' END"
            ).fetchall()
        )
        return [
            Backlog(
                "email" if r["channel"] == "email" else f"webhook:{r['recipient']}",
                int(r["n"]),
                datetime.fromisoformat(r["oldest"]) if r["oldest"] else None,
            )
            for r in rows
        ]

    def rows(self) -> list[dict[str, Any]]:
        """Every delivery with its notice (for tests and `socialguard` reports)."""
        rows = self._store._read(
            lambda c: c.execute(
                "SELECT d.*, o.kind, o.subject, o.event_id FROM outbox_deliveries d"
                " JOIN outbox o ON o.seq = d.event_seq ORDER BY d.id"
            ).fetchall()
        )
        return [dict(r) for r in rows]

    def notices(self) -> list[dict[str, Any]]:
        rows = self._store._read(
            lambda c: c.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
        )
        return [dict(r) for r in rows]


def _lasts(starts: str, ends: str) -> timedelta:
    return datetime.fromisoformat(ends) - datetime.fromisoformat(starts)
