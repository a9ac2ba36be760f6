"""The injectable clock the addon takes "now" from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from socialguard.proxy.clock import ManualClock, SystemClock


def test_manual_clock_is_set_and_advanced() -> None:
    clock = ManualClock(datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    clock.advance(timedelta(hours=3))
    assert clock.now() == datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    clock.set(datetime(2026, 12, 2, 0, 0, tzinfo=UTC))
    assert clock.now().day == 2


def test_manual_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 12, 1, 10, 0))


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is not None
