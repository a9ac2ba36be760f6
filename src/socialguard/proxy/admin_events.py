"""Hands administrators' changes from the overrides store's outbox to this node's decision log.

The CLI never writes the decision log (a hash chain has one writer: the proxy). It writes each
change into the store's outbox in the same transaction as the change; this pump, on its own thread,
claims them (`claim_admin_events` gives each event to exactly one node) and appends them to the
chain, so an auditor reads the decisions and the hands that changed them in one place.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

log = structlog.get_logger(__name__)

BATCH = 100


def pump_once(store: Any, audit: Any, node: str) -> int:
    """Claim and append one batch; return how many events were written."""
    from socialguard.audit import admin_event

    written = 0
    for raw in store.claim_admin_events(node, BATCH):
        fields = dict(raw)
        action = fields.pop("action")
        try:
            audit.write(admin_event(action, **fields))
            written += 1
        except Exception as e:  # claimed but not written: keep it visible in the operational log
            log.error("admin_event_not_logged", error=str(e), event=raw)
    return written


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
        try:
            while pump_once(self._store, self._audit, self._node) == BATCH:
                pass
        except Exception as e:  # the store may be gone at shutdown; events stay unclaimed for later
            log.error("admin_events_pump_failed", error=str(e))

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            self._drain()
