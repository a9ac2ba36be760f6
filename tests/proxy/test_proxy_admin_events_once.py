"""Admin events reach the decision log exactly once: a write that fails (a full disk) is retried,
and a pump killed between writing and confirming does not write the event again.

The store hands an event to a node (`claim`), the pump writes it to the chain, then confirms it;
an event claimed but not confirmed is offered to the same node again and written only if the log
does not already hold its `event_id`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from socialguard.audit import AuditLog, admin_event, files
from socialguard.errors import AuditError
from socialguard.overrides import Actor, open_store
from socialguard.proxy.admin_events import AdminEventPump, Deliveries, pump_once

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
ADMIN = Actor(by="principal", source="test")


def _grants(store: Any, n: int) -> None:
    for i in range(n):
        store.add_grant(f"user:u{i}", ("facebook.com",), T0, T0 + timedelta(hours=1), "trip", ADMIN)


def _admin_ids(log_dir: Path) -> Counter[str]:
    """How often each admin event (by its event id) is in the log."""
    seen: Counter[str] = Counter()
    for lf in files.list_log_files(log_dir):
        for _, line in files.iter_lines(lf.path):
            if not line.endswith(b"\n"):
                continue  # being written
            r = json.loads(line)
            if r.get("type") == "admin":
                seen[r["details"]["event_id"]] += 1
    return seen


def _admin_count(log_dir: Path) -> int:
    """Admin records in the plain files, counted cheaply while a pump writes them."""
    return sum(p.read_bytes().count(b'"type":"admin"') for p in log_dir.glob("*.jsonl"))


class FailingAudit:
    """An AuditLog whose writes fail while `full` (as on a full disk)."""

    def __init__(self, real: AuditLog) -> None:
        self.real = real
        self.full = True
        self.log_dir = real.log_dir
        self.node = real.node

    def write(self, event: dict[str, Any]) -> int:
        if self.full:
            raise AuditError("decisions.jsonl: cannot write the decision log: No space left")
        return self.real.write(event)


def test_a_failed_write_keeps_the_pump_alive_and_the_event_is_written_once_later(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "socialguard.db", clock=lambda: T0)
    audit = AuditLog(tmp_path / "log", "unit")
    failing = FailingAudit(audit)
    _grants(store, 3)
    with structlog.testing.capture_logs() as logs:
        assert (
            pump_once(store, failing, "unit", Deliveries()) == 0
        )  # the handler itself must not crash
    assert any(e["event"] == "admin_event_not_logged" for e in logs)
    failing.full = False
    logged = Deliveries()
    while pump_once(store, failing, "unit", logged):
        pass
    audit.close()
    store.close()
    counts = _admin_ids(tmp_path / "log")
    assert len(counts) == 3 and set(counts.values()) == {1}


def test_events_written_but_not_confirmed_before_a_crash_are_not_written_again(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "socialguard.db", clock=lambda: T0)
    _grants(store, 10)
    audit = AuditLog(tmp_path / "log", "unit")
    # the pump of a process that then died: claimed 10, wrote 4, confirmed none
    claimed = store.claim_admin_events("unit", 10)
    for raw in claimed[:4]:
        fields = dict(raw)
        audit.write(admin_event(fields.pop("action"), **fields))
    audit.close()
    # the restarted proxy
    audit = AuditLog(tmp_path / "log", "unit")
    pump = AdminEventPump(store, audit, "unit", interval_s=60.0).start()
    pump.stop()
    audit.close()
    store.close()
    counts = _admin_ids(tmp_path / "log")
    assert len(counts) == 10 and set(counts.values()) == {1}


KILLED_PUMP = """
import sys, time
from pathlib import Path
from socialguard.audit import AuditLog
from socialguard.overrides import open_store
from socialguard.proxy.admin_events import AdminEventPump

class SlowLog(AuditLog):  # a busy proxy: the kill lands among the writes, not after them
    def write(self, event):
        time.sleep(0.002)
        return super().write(event)

store = open_store(Path(sys.argv[1]))
audit = SlowLog(Path(sys.argv[2]), "unit", compress=False)
print("ready", flush=True)
AdminEventPump(store, audit, "unit", interval_s=60.0).stop()  # drains everything, then...
print("done", flush=True)
"""


def _kill_once_records_appear(db: Path, log_dir: Path, before: int) -> bool:
    """Run a pump in its own process; SIGKILL it once it has written some events past `before`
    and before it is done. True if it was cut short."""
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_PUMP, str(db), str(log_dir)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for _ in range(100):  # structlog's warnings (a recovered chain) come first
                if proc.stdout.readline().strip() in ("ready", ""):
                    break
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.005)
                written = _admin_count(log_dir)
                if written >= before + 50 and written % 100:  # mid-batch, most likely
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return proc.returncode == -signal.SIGKILL


def test_sigkill_while_delivering_loses_and_repeats_no_event(tmp_path: Path) -> None:
    db = tmp_path / "socialguard.db"
    log_dir = tmp_path / "log"
    store = open_store(db)
    _grants(store, 2000)
    store.close()
    before = 0
    for _ in range(5):  # five kills, each from where the last left the log
        assert _kill_once_records_appear(db, log_dir, before)
        before = sum(_admin_ids(log_dir).values())
    assert 0 < before < 2000  # killed mid-delivery
    store = open_store(db)
    audit = AuditLog(log_dir, "unit", compress=False)
    AdminEventPump(store, audit, "unit", interval_s=60.0).stop()
    audit.close()
    store.close()
    counts = _admin_ids(log_dir)
    assert len(counts) == 2000
    assert [k for k, v in counts.items() if v != 1] == []
    os.sync()
