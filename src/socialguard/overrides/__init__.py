"""socialguard.overrides: grants, emergencies and access requests, the store behind them, and the
in-memory snapshot the proxy decides against.

    store = open_store(paths.store_path(state))
    refresher = SnapshotRefresher(store).start()   # proxy: decide(..., refresher.current)
"""

from __future__ import annotations

from .parse import Limits, parse_duration, parse_until
from .records import (
    AccessRequest,
    ActiveOverrides,
    Actor,
    AdminEvent,
    EmergencyRecord,
    GrantRecord,
    invoking_actor,
)
from .refresher import SnapshotRefresher
from .store import (
    LimitReachedError,
    NotFoundError,
    StateError,
    Store,
    TokenUsedError,
    open_store,
    utc_now,
)

__all__ = [
    "AccessRequest",
    "ActiveOverrides",
    "Actor",
    "AdminEvent",
    "EmergencyRecord",
    "GrantRecord",
    "LimitReachedError",
    "Limits",
    "NotFoundError",
    "SnapshotRefresher",
    "StateError",
    "Store",
    "TokenUsedError",
    "invoking_actor",
    "open_store",
    "parse_duration",
    "parse_until",
    "utc_now",
]
