"""Search and report count what happened: one blocked visit is one blocked attempt, `--action block`
means blocked, names agree with /metrics, typos are refused, time filters survive a clock that
steps back."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from audit_helpers import DENVER, Clock, make_decision

from socialguard.audit import AuditLog, decision_event, new_decision_id
from socialguard.audit.reader import Filter, search
from socialguard.audit.report import summarise


def _visit(log: AuditLog, host: str = "www.facebook.com") -> None:
    """One blocked HTTPS navigation as the proxy logs it: the connection is inspected (decrypted
    so that the block page can be shown), then the request is blocked."""
    d = make_decision(host)
    log.write(
        decision_event(
            d, decision_id=new_decision_id(), stage="connection", client="10.0.0.5",
            sni=host, verdict="inspect",
        )
    )  # fmt: skip
    log.write(
        decision_event(
            d, decision_id=new_decision_id(), stage="request", client="10.0.0.5",
            scheme="https", method="GET",
        )
    )  # fmt: skip


def sg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", "audit", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def visits(tmp_path: Path, clock: Clock) -> Path:
    log = AuditLog(tmp_path / "log", "n1", clock=clock, timezone=DENVER)
    for _ in range(3):
        clock.advance(60)
        _visit(log)
    log.write(
        {"type": "form", "event": "block_page_form", "form": "emergency", "client": "10.0.0.5",
         "outcome": "declared", "decision_id": new_decision_id()}
    )  # fmt: skip
    log.close()
    return tmp_path / "log"


def test_a_blocked_visit_counts_once_in_the_report(visits: Path) -> None:
    s = summarise(search(visits, Filter()), DENVER)
    assert s.blocked == 3


def test_action_block_lists_the_blocked_requests_not_the_inspected_connections(
    visits: Path,
) -> None:
    found = [f.record for f in search(visits, Filter(action="block"))]
    assert len(found) == 3 and {r["stage"] for r in found} == {"request"}
    inspected = [f.record for f in search(visits, Filter(action="inspect"))]
    assert len(inspected) == 3 and {r["stage"] for r in inspected} == {"connection"}


def test_the_connection_record_says_inspect_as_metrics_does(visits: Path) -> None:
    conns = [f.record for f in search(visits, Filter()) if f.record.get("stage") == "connection"]
    assert {(r["action"], r["verdict"]) for r in conns} == {("inspect", "inspect")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--basis", "emergancy"], "did you mean 'emergency'"),
        (["--category", "socal"], "did you mean 'social'"),
        (["--who", "group:staf"], "did you mean 'group:staff'"),
        (["--action", "blocked"], "did you mean 'block'"),
    ],
)
def test_a_misspelt_filter_exits_2_with_did_you_mean(
    visits: Path, args: list[str], message: str
) -> None:
    r = sg("search", "--log-dir", str(visits), *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr


def test_basis_form_finds_the_form_records_and_shows_their_outcome(visits: Path) -> None:
    r = sg("search", "--log-dir", str(visits), "--basis", "form")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    assert len(rows) == 1 and "declared" in rows[0] and "form" in rows[0]


def test_since_finds_every_record_after_the_clock_stepped_back(
    tmp_path: Path, clock: Clock
) -> None:
    """The writer's clock jumps back an hour (NTP correction) across file rotations: a file
    that begins later may hold earlier times, so files cannot be skipped by their first time."""
    clock.set(datetime(2026, 11, 24, 16, 0, tzinfo=UTC))
    log = AuditLog(tmp_path / "log", "n1", clock=clock, timezone=DENVER, max_bytes=4096)
    written = []
    for step in range(40):
        clock.advance(60)
        if step == 20:
            clock.advance(-3600)  # stepped back, mid-file
        _visit(log)
        written.append(clock.t)
    log.close()
    since = datetime.fromtimestamp(min(written[20:]), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    want = sum(1 for t in written if t >= min(written[20:]))
    found = [f for f in search(tmp_path / "log", Filter(since=since, action="block"))]
    assert len(found) == want


def test_logs_from_before_the_change_count_the_same(tmp_path: Path, clock: Clock) -> None:
    """Connection records written before their action was their verdict said `block` for an
    inspected connection: read back, they are inspected connections, not blocked visits."""
    log = AuditLog(tmp_path / "log", "n1", clock=clock, timezone=DENVER)
    d = make_decision()
    old = decision_event(
        d, decision_id=new_decision_id(), stage="connection", client="10.0.0.5", verdict="inspect"
    )
    old["action"] = "block"  # as the writer used to put it
    log.write(old)
    log.write(decision_event(d, decision_id=new_decision_id(), stage="request", client="10.0.0.5"))
    log.close()
    assert summarise(search(tmp_path / "log", Filter()), DENVER).blocked == 1
    for flt in (Filter(action="block"), Filter(action="block", types=frozenset({"decision"}))):
        assert [f.record["stage"] for f in search(tmp_path / "log", flt)] == ["request"]
