"""Hands administrators' changes from the overrides store's outbox to this node's decision log,
each exactly once.

The CLI never writes the decision log (a hash chain has one writer: the proxy). It writes each
change into the store's outbox in the same transaction as the change; this pump, on its own thread,
claims them (`claim_admin_events` gives each event to exactly one node), appends them to the chain
and then confirms them (`confirm_admin_events`), so an auditor reads the decisions and the hands
that changed them in one place.

Exactly once across crashes and full disks: an event is confirmed only after its record is in the
kernel's hands. An event claimed but not confirmed (the pump died, or the write failed) is offered
to the same node again and written unless the log already holds its `event_id` — known in memory
for what this process wrote, and looked up in the chain's recent files for what a predecessor did.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

BATCH = 100
# How far before the oldest unconfirmed claim the log is searched for its event (clock steps).
CLAIM_MARGIN = timedelta(hours=1)


class Deliveries:
    """What this process knows about its node's deliveries: event ids it has written but not yet
    confirmed, and every id whose presence in the log it has settled (so the log is searched once
    per event, not once per retry)."""

    def __init__(self) -> None:
        self.logged: set[str] = set()
        self.settled: set[str] = set()

    def settle(self, audit: Any, node: str, batch: list[dict[str, Any]]) -> None:
        """For unconfirmed events offered again, find which the chain already holds."""
        unknown = {_event_id(raw) for raw in batch} - self.settled
        if not unknown:
            return
        since = _search_from([raw.get("claimed_at") for raw in batch])
        from socialguard.audit.delivered import admin_event_ids_in_log

        self.logged |= admin_event_ids_in_log(Path(audit.log_dir), node, unknown, since)
        self.settled |= unknown

    def confirmed(self, ids: list[str]) -> None:
        self.logged.difference_update(ids)
        self.settled.difference_update(ids)


def _event_id(raw: dict[str, Any]) -> str:
    return str(raw["details"]["event_id"])


def _search_from(claimed: list[Any]) -> str:
    """The UTC time (ISO text, to the second) from which the log may hold these events."""
    times = []
    for text in claimed:
        try:
            times.append(datetime.fromisoformat(str(text)))
        except ValueError:
            return ""  # unknown: search every file
    if not times:
        return ""
    return (min(times) - CLAIM_MARGIN).strftime("%Y-%m-%dT%H:%M:%S")


def pump_once(store: Any, audit: Any, node: str, deliveries: Deliveries) -> int:
    """Deliver one batch — events this node claimed earlier but never confirmed first, else newly
    claimed ones — and confirm it; return how many were confirmed, 0 if a write failed (what is
    left stays claimed by this node and is retried on the next drain)."""
    from socialguard.audit import admin_event

    batch = store.unconfirmed_admin_events(node, BATCH)
    if batch:
        deliveries.settle(audit, node, batch)
    else:
        batch = store.claim_admin_events(node, BATCH)
    done: list[int] = []
    ids: list[str] = []
    failed = False
    for raw in batch:
        event_id = _event_id(raw)
        if event_id not in deliveries.logged:
            fields = {k: v for k, v in raw.items() if k not in ("action", "claimed_at")}
            try:
                audit.write(admin_event(raw["action"], **fields))
            except Exception as e:  # a full disk: keep it claimed, retry on the next drain
                log.error("admin_event_not_logged", error=str(e), admin_event=raw)
                failed = True
                break
            deliveries.logged.add(event_id)
        deliveries.settled.add(event_id)
        done.append(int(raw["details"]["store_seq"]))
        ids.append(event_id)
    store.confirm_admin_events(node, done)
    deliveries.confirmed(ids)
    return 0 if failed else len(done)


class AdminEventPump:
    """Drains the outbox on a daemon thread when woken (`wake()`, called when the store's change
    counter moves: every write to the store bumps it, in the same transaction as its outbox row)
    and at least every `interval_s` regardless; `stop()` drains once more.

    Woken rather than polling every half second: the store is already polled by the overrides
    refresher, and every wake-up of a thread costs the proxy's event loop (cold caches, the GIL).
    """

    def __init__(self, store: Any, audit: Any, node: str, interval_s: float = 10.0) -> None:
        self._store = store
        self._audit = audit
        self._node = node
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliveries = Deliveries()
        self._drain_lock = threading.Lock()

    def start(self) -> AdminEventPump:
        self._thread = threading.Thread(
            target=self._run, name="socialguard-admin-events", daemon=True
        )
        self._thread.start()
        return self

    def wake(self) -> None:
        """Drain soon: something was written to the store (thread-safe, returns at once)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._drain()

    def _drain(self) -> None:
        with self._drain_lock:
            try:
                while pump_once(self._store, self._audit, self._node, self._deliveries) == BATCH:
                    pass
            except Exception as e:  # the store may be gone at shutdown; events stay for later
                log.error("admin_events_pump_failed", error=str(e))

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            self._drain()
