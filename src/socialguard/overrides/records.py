"""What the store keeps beyond the engine's Grant and Emergency: who changed what, when, and its
status.

The engine only needs the Grant/Emergency in force; administrators and auditors need the whole
history
(revoked, stopped, acknowledged, approved, denied). These records carry both.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from socialguard.engine.limits import Allowance
from socialguard.engine.model import Emergency, Grant

# How far back the snapshot keeps form uses: any local day's start, even a 25-hour one (DST),
# read up to an hour after the snapshot was built.
USES_WINDOW_HOURS = 26


@dataclass(frozen=True, slots=True)
class RecentUses:
    """When each person used each block-page form lately (`kind` → person key → start times),
    as the refresher last read them: the block page asks this, not the database, whether a form
    still has room today (issue 23: no offer the server will refuse, and no SQLite read on the
    proxy's event loop). The store still decides when the form comes back."""

    by_kind: dict[str, dict[str, tuple[datetime, ...]]] = field(default_factory=dict)

    EMPTY: ClassVar[RecentUses]

    def used(self, kind: str, allowance: Allowance, since: datetime) -> int:
        """How many uses `allowance` counts since `since` (a shared one: every key it prefixes)."""
        keys = self.by_kind.get(kind, {})
        if allowance.shared:
            times: Iterable[datetime] = (
                t for k, ts in keys.items() if k.startswith(allowance.key) for t in ts
            )
        else:
            times = keys.get(allowance.key, ())
        return sum(1 for t in times if t >= since)

    def room(self, kind: str, spends: Iterable[Allowance], since: datetime) -> bool:
        """Whether every allowance one more use spends has room left since `since`."""
        return all(self.used(kind, a, since) < a.per_day for a in spends)


RecentUses.EMPTY = RecentUses()


@dataclass(frozen=True, slots=True)
class Actor:
    """The hands behind a change: `by` (a person) and `source` (host and tty, or a client
    address)."""

    by: str
    source: str


def invoking_actor(by: str | None = None) -> Actor:
    """The person running this process: `by` if given, else the real OS user (the sudo user when
    root runs under sudo). The CLI's changing commands use `socialguard.cli.actor` instead, which
    also checks `by` against the rules file's roles."""
    name = (by or "").strip() or _os_user()
    return Actor(by=name, source=f"{socket.gethostname()}:{_tty()}")


def _os_user() -> str:
    """The real user (getuid, never the spoofable LOGNAME/USER); under sudo as root, SUDO_UID's."""
    uid = os.getuid()
    sudo_uid = os.environ.get("SUDO_UID", "")
    if uid == 0 and sudo_uid.isdigit():
        uid = int(sudo_uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def _tty() -> str:
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                return os.ttyname(stream.fileno())
        except (OSError, ValueError):
            continue
    return "no-tty"


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A grant with its history: when it was made, and whether (and why) it was revoked."""

    grant: Grant
    created: datetime
    source: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.grant.ends <= now:
            return "expired"
        if self.grant.starts > now:
            return "scheduled"
        return "active"


@dataclass(frozen=True, slots=True)
class EmergencyRecord:
    """An emergency with its history: stop, and for self-declared ones the review."""

    emergency: Emergency
    created: datetime
    source: str
    person: str | None = None  # self-declared: the person key the daily limit counts against
    url: str | None = None  # self-declared: the page the person was trying to reach
    stopped_at: datetime | None = None
    stopped_by: str | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_note: str | None = None

    def status(self, now: datetime) -> str:
        e = self.emergency
        if self.stopped_at is not None:
            return "stopped"
        if e.ends is not None and e.ends <= now:
            return "ended"
        return "active"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A request filed from the block page ("Ask administration for access"), and its answer."""

    id: str
    who: str  # the key a grant for it would name: user:, device: or ip:
    site: str
    url: str
    rule_id: str | None
    decision_id: str | None
    reason: str
    created: datetime
    client_ip: str
    status: str = "pending"  # pending | approved | denied
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None
    grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdminEvent:
    """One change, as it goes to the decision log: who, from where, what, on what, why."""

    seq: int
    created: datetime
    action: str
    by: str
    source: str
    target: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    event_id: str = ""  # unique across stores and restores: how the log deduplicates deliveries

    def as_dict(self) -> dict[str, Any]:
        """Keyword arguments for `socialguard.audit.admin_event` plus the store's own seq and
        time."""
        return {
            "action": self.action,
            "by": self.by,
            "source": self.source,
            "target": self.target,
            "reason": self.reason,
            "details": {
                **self.details,
                "store_seq": self.seq,
                "event_id": self.event_id or f"store-seq-{self.seq}",
                "at": self.created.isoformat(),
            },
        }


@dataclass(frozen=True, slots=True)
class ActiveOverrides:
    """What is in force (or scheduled) at `now`, and the next moment that changes by the clock
    alone; with the block-page forms used lately, so the page can count allowances in memory."""

    grants: tuple[Grant, ...]
    emergencies: tuple[Emergency, ...]
    next_boundary: datetime | None
    uses: RecentUses = field(default_factory=lambda: RecentUses.EMPTY)
