"""Where the addon takes "now" from: the wall clock in production, a hand-set clock in tests.

The engine never reads the clock; the addon asks its `Clock` once per decision and passes the answer
in. Injecting the clock (rather than patching `datetime` globally) lets an end-to-end test put a
running proxy at 10:00 on a school day, then at 18:00, without touching the code under test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that says what time it is, as a timezone-aware datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC (the engine converts to the district's zone itself)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until told otherwise; for tests and benchmarks.

    Thread-safe, because the test thread sets it while the proxy's event loop thread reads it.
    """

    def __init__(self, at: datetime) -> None:
        self._lock = threading.Lock()
        self._now = _aware(at)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, at: datetime) -> None:
        with self._lock:
            self._now = _aware(at)

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self._now += by


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"clock time must be timezone-aware, got naive {at.isoformat()}")
    return at


def epoch_seconds(clock: Clock) -> Callable[[], float]:
    """`clock` as seconds since the epoch, for what keeps time in floats (identity bindings), so
    a test's ManualClock moves them too. The system clock's is `time.time` itself: the request
    path asks it on every request, and building a datetime there would cost for nothing."""
    if isinstance(clock, SystemClock):
        return time.time
    return lambda: clock.now().timestamp()
