"""Keeps the proxy's in-memory Overrides snapshot fresh, off the event loop.

The proxy decides against `refresher.current` and never touches the database on the hot path. A
background thread polls the store's change counter (one tiny indexed read) every `interval_s` and
rebuilds
the snapshot when it moved, and also when the clock passes the next grant/emergency start or end,
so the
snapshot drops what has expired (the engine checks `now` against each grant too, so expiry is exact
even
between rebuilds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog

from socialguard.engine.model import Emergency, Grant

from .answers import ANSWERS_KEPT_FOR, RequestAnswers
from .records import RecentUses
from .store import Clock, Store, utc_now

log = structlog.get_logger(__name__)

Builder = Callable[[Iterable[Grant], Iterable[Emergency]], Any]


def engine_builder() -> Builder:
    """`socialguard.engine.Overrides.build`, imported late so the engine can land after this module.

    Nothing in force gives `Overrides.EMPTY` itself, which decide() recognises by identity and skips
    every override lookup for (the usual case: most of the time nobody holds a grant)."""
    from socialguard.engine import Overrides

    def build(grants: Iterable[Grant], emergencies: Iterable[Emergency]) -> Any:
        grants, emergencies = tuple(grants), tuple(emergencies)
        if not grants and not emergencies:
            return Overrides.EMPTY
        return Overrides.build(grants, emergencies)

    return build


def empty_snapshot() -> Any:
    from socialguard.engine import Overrides

    return Overrides.EMPTY


class SnapshotRefresher:
    """Background refresh of the Overrides snapshot; `.current` is always a complete, immutable
    snapshot.

    Use as a context manager, or call `start()`/`stop()`. `refresh_now()` rebuilds synchronously
    (the
    block-page emergency form calls it so the redirect that follows is already allowed).
    """

    def __init__(
        self,
        store: Store,
        interval_s: float = 0.5,
        *,
        clock: Clock = utc_now,
        build: Builder | None = None,
        initial: Any = None,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self._clock = clock
        self._build = build
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counter: int | None = None
        self._next_boundary: datetime | None = None
        self.rebuilds = 0
        self.failures = 0
        self._failing: str | None = None  # the poll error last logged, while polls keep failing
        # Called (on the polling thread) whenever the change counter moves: the proxy's admin-event
        # pump drains the outbox then, instead of polling the store on a thread of its own.
        self.on_change: Callable[[], None] | None = None
        self.current: Any = initial
        # The block-page forms used lately, read with the snapshot: the block page counts a
        # person's daily allowance here, in memory, never in the database on the event loop.
        self.uses: RecentUses = RecentUses.EMPTY
        # The latest access request per person and site, for the block page (overrides/answers.py)
        self.answers = RequestAnswers()
        if not self.refresh_now() and self.current is None:
            # No store yet: decide with no overrides at all (the stricter answer), not with None.
            self.current = (self._build or engine_builder())((), ())

    @property
    def next_boundary(self) -> datetime | None:
        """The next moment a grant or emergency starts or ends (None: nothing pending)."""
        return self._next_boundary

    def refresh_now(self) -> bool:
        """Rebuild from the store now; on failure keep the previous snapshot and log. True if
        rebuilt."""
        with self._lock:
            try:
                counter = self.store.change_counter()
                now = self._clock()
                active = self.store.active(now)
                build = self._build or engine_builder()
                snapshot = build(active.grants, active.emergencies)
                answers = self._answers(now)
            except Exception as e:
                self.failures += 1
                log.error("overrides_refresh_failed", error=str(e), error_type=type(e).__name__)
                return False
            self.current = snapshot
            self.uses = getattr(active, "uses", RecentUses.EMPTY)
            if answers is not None:
                self.answers = answers
            changed, self._counter = counter != self._counter, counter
            self._next_boundary = active.next_boundary
            self.rebuilds += 1
            log.debug(
                "overrides_refreshed",
                grants=len(active.grants),
                emergencies=len(active.emergencies),
                change_counter=counter,
            )
        if changed and self.on_change is not None:  # also when a writer asked for the rebuild
            try:
                self.on_change()
            except Exception as e:  # a listener must not stop the snapshot from refreshing
                log.error("overrides_change_listener_failed", error=repr(e))
        return True

    def _answers(self, now: datetime) -> RequestAnswers | None:
        """The recent access requests' answers; None from a store that keeps none."""
        recent = getattr(self.store, "recent_answers", None)
        if recent is None:
            return None
        return RequestAnswers.build(recent(now - ANSWERS_KEPT_FOR))

    def refresh_if_needed(self) -> bool:
        """One poll: rebuild if the store changed or a start/end has passed. True if rebuilt."""
        try:
            counter = self.store.change_counter()
        except Exception as e:
            self.failures += 1
            self._report_poll_failure(e)
            return False
        if self._failing is not None:
            log.warning("overrides_poll_recovered", after=self._failing)
            self._failing = None
        boundary = self._next_boundary
        changed = counter != self._counter
        if changed or (boundary is not None and self._clock() >= boundary):
            return self.refresh_now()
        return False

    def _report_poll_failure(self, e: Exception) -> None:
        """Log a failing poll once per distinct error, not twice a second while it lasts (a store
        deleted under the proxy fails every poll until a file is back); the snapshot in force
        stays meanwhile."""
        text = f"{type(e).__name__}: {e}"
        if text == self._failing:
            return
        self._failing = text
        log.error("overrides_poll_failed", error=str(e), error_type=type(e).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.refresh_if_needed()

    def start(self) -> SnapshotRefresher:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="socialguard-overrides", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SnapshotRefresher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
