"""The admin-event pump drains the store's outbox into the decision log when woken (the overrides
refresher wakes it when the store changes), and on its own only every `interval_s`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from socialguard.audit import AuditLog
from socialguard.overrides import Actor, open_store
from socialguard.proxy.admin_events import AdminEventPump

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)


def _admin_records(log_dir: Path) -> list[dict[str, Any]]:
    """The admin events in the decision log's files, as written (the real AuditLog's chain)."""
    out = []
    for f in sorted(log_dir.glob("*.jsonl")):
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return [r for r in out if r.get("type") == "admin"]


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
    audit = AuditLog(tmp_path / "log", "unit")
    pump = AdminEventPump(store, audit, "unit", interval_s=60.0).start()
    try:
        store.add_grant(
            "user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "trip",
            Actor(by="principal", source="test"),
        )  # fmt: skip
        events = lambda: _admin_records(tmp_path / "log")  # noqa: E731 - read again on each poll
        assert not _until(events, 0.3)  # not woken: the 60 s interval holds it
        pump.wake()
        assert _until(events, 5.0)
        assert events()[0]["by"] == "principal"
    finally:
        pump.stop()
        store.close()
        audit.close()


def test_stop_drains_what_is_left(tmp_path: Path) -> None:
    store = open_store(tmp_path / "socialguard.db", clock=lambda: T0)
    audit = AuditLog(tmp_path / "log", "unit")
    pump = AdminEventPump(store, audit, "unit", interval_s=60.0).start()
    store.add_grant(
        "user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "trip",
        Actor(by="principal", source="test"),
    )  # fmt: skip
    pump.stop()
    store.close()
    audit.close()
    assert len(_admin_records(tmp_path / "log")) == 1
