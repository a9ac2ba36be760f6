"""The overrides store's interface, so that SQLite today and PostgreSQL tomorrow are both just a
`Store`.

The proxy and the CLI only ever see this Protocol and `open_store(location)`; which implementation
answers is chosen by the location (a path → SQLite; a `postgresql://` URL → not yet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from socialguard.engine.limits import Allowance
from socialguard.engine.model import Emergency, Grant
from socialguard.errors import StoreError

from .records import AccessRequest, ActiveOverrides, Actor, EmergencyRecord, GrantRecord

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock; every store takes a clock so tests can inject their own."""
    return datetime.now(UTC)


class NotFoundError(StoreError):
    """No grant, emergency or request has that id."""


class LimitReachedError(StoreError):
    """A daily allowance of the block page's forms is used up (policy `overrides.*_per_day*`);
    `allowance` is the one (socialguard.engine.limits.Allowance), when the caller passed it."""

    def __init__(self, message: str, allowance: Allowance | None = None) -> None:
        super().__init__(message)
        self.allowance = allowance


class TokenUsedError(StoreError):
    """A block-page form token was already spent (on this node or another sharing the store)."""


FormToken = tuple[str, datetime]  # a form token's nonce and when it expires


class StateError(StoreError):
    """The change makes no sense in the record's state (revoking a revoked grant, approving a
    denied request)."""


class Store(Protocol):
    """Grants, emergencies and access requests; every change also appends an admin event (same
    transaction).

    Times in and out are timezone-aware UTC. Every write bumps `change_counter()`.
    """

    def change_counter(self) -> int: ...

    def active(self, now: datetime) -> ActiveOverrides: ...

    def snapshot(self, now: datetime) -> Any: ...  # socialguard.engine.Overrides

    # grants
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
    ) -> Grant: ...

    def get_grant(self, grant_id: str) -> GrantRecord: ...

    def list_grants(self, now: datetime, *, include_all: bool = False) -> list[GrantRecord]: ...

    def revoke_grant(self, grant_id: str, reason: str, actor: Actor) -> GrantRecord: ...

    # emergencies
    def start_emergency(
        self,
        scope: str,
        ends: datetime | None,
        reason: str,
        actor: Actor,
        *,
        sites: tuple[str, ...] = (),
    ) -> Emergency: ...

    def stop_emergencies(
        self, ids: list[str] | None, reason: str, actor: Actor
    ) -> list[EmergencyRecord]: ...

    def get_emergency(self, emergency_id: str) -> EmergencyRecord: ...

    def list_emergencies(
        self, now: datetime, *, include_all: bool = False
    ) -> list[EmergencyRecord]: ...

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
    ) -> EmergencyRecord: ...

    def pending_reviews(self) -> list[EmergencyRecord]: ...

    def ack_emergency(
        self, emergency_id: str, note: str | None, actor: Actor
    ) -> EmergencyRecord: ...

    # access requests
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
    ) -> AccessRequest: ...

    def get_request(self, request_id: str) -> AccessRequest: ...

    def list_requests(self, *, include_all: bool = False) -> list[AccessRequest]: ...

    def approve_request(
        self, request_id: str, ends: datetime, actor: Actor, *, note: str | None = None
    ) -> tuple[AccessRequest, Grant]: ...

    def deny_request(self, request_id: str, reason: str, actor: Actor) -> AccessRequest: ...

    # block-page form tokens: one signing key per store, so any node can check any node's tokens
    def form_secret(self) -> bytes: ...

    # the admin-event outbox
    def record_refusal(
        self, actor: Actor, action: str, target: str, reason: str, details: dict[str, Any]
    ) -> None: ...

    def claim_admin_events(self, node: str, limit: int = 100) -> list[dict[str, Any]]: ...

    def unconfirmed_admin_events(self, node: str, limit: int = 100) -> list[dict[str, Any]]: ...

    def confirm_admin_events(self, node: str, store_seqs: list[int]) -> None: ...

    def close(self) -> None: ...


def open_store(location: str | Path, *, clock: Clock = utc_now) -> Store:
    """Open (creating and migrating if needed) the store at `location`.

    A filesystem path means SQLite (the file is created, with its directory). `postgresql://` is
    reserved for the PostgreSQL implementation the interface was designed for.
    """
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            f"{text.rsplit('@', maxsplit=1)[-1]}: the PostgreSQL store is not implemented yet"
        )
    from .sqlite import SqliteStore

    return SqliteStore(Path(text), clock=clock)
