"""The admin-event pump drains the store's outbox into the decision log when woken (the overrides
refresher wakes it when the store changes), and on its own only every `interval_s`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from socialguard.overrides import Actor, open_store
from socialguard.proxy.admin_events import AdminEventPump

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)


class Collected:
    """Stands in for the AuditLog: keeps what the pump writes."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> int:
        self.events.append(event)
        return len(self.events)


def _until(check: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_a_woken_pump_drains_at_once_and_an_unwoken_one_waits_for_its_interval(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "socialguard.db", clock=lambda: T0)
    audit = Collected()
    pump = AdminEventPump(store, audit, "unit", interval_s=60.0).start()
    try:
        store.add_grant(
            "user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "trip",
            Actor(by="principal", source="test"),
        )  # fmt: skip
        assert not _until(lambda: audit.events, 0.3)  # not woken: the 60 s interval holds it
        pump.wake()
        assert _until(lambda: audit.events, 5.0)
        assert audit.events[0]["by"] == "principal"
    finally:
        pump.stop()
        store.close()


def test_stop_drains_what_is_left(tmp_path: Path) -> None:
    store = open_store(tmp_path / "socialguard.db", clock=lambda: T0)
    audit = Collected()
    pump = AdminEventPump(store, audit, "unit", interval_s=60.0).start()
    store.add_grant(
        "user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "trip",
        Actor(by="principal", source="test"),
    )  # fmt: skip
    pump.stop()
    store.close()
    assert len(audit.events) == 1
