"""The worker supervisor, with real processes: signals are forwarded, one exit stops the set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from socialguard.deploy.workers import spawn_workers, worker_admin, worker_node_id, worker_port

# A stand-in worker: records its pid, then waits (bounded) for a signal or exits with a given code.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    out, i, code = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(os.path.join(out, f"w{i}.pid"), "w") as f:
        f.write(str(os.getpid()))
    if code != "wait":
        time.sleep(0.5)
        sys.exit(int(code))
    for _ in range(600):
        time.sleep(0.1)
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import sys
    from socialguard.deploy.workers import spawn_workers
    out, codes = sys.argv[1], sys.argv[2].split(",")
    worker = sys.argv[3]
    rc = spawn_workers(len(codes), lambda i: [sys.executable, worker, out, str(i), codes[i]],
                       grace_seconds=5)
    print("rc", rc, flush=True)
    sys.exit(rc)
    """
)


def _start(tmp_path: Path, codes: list[str]) -> subprocess.Popen[str]:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    sup = tmp_path / "sup.py"
    sup.write_text(SUPERVISOR)
    return subprocess.Popen(
        [sys.executable, str(sup), str(tmp_path), ",".join(codes), str(worker)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for_pids(tmp_path: Path, n: int) -> list[int]:
    for _ in range(200):  # bounded: 20 s at most
        files = sorted(tmp_path.glob("w*.pid"))
        if len(files) == n and all(f.read_text() for f in files):
            return [int(f.read_text()) for f in files]
        time.sleep(0.1)
    raise AssertionError(f"workers did not start: {list(tmp_path.iterdir())}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_sigterm_is_forwarded_and_the_set_exits_cleanly(tmp_path: Path) -> None:
    sup = _start(tmp_path, ["wait", "wait", "wait"])
    pids = _wait_for_pids(tmp_path, 3)
    sup.send_signal(signal.SIGTERM)
    out, _ = sup.communicate(timeout=30)
    assert sup.returncode == 0
    assert "rc 0" in out
    assert not any(_alive(p) for p in pids)


def test_one_worker_failing_stops_the_others_and_its_code_is_returned(tmp_path: Path) -> None:
    sup = _start(tmp_path, ["wait", "3", "wait"])
    sup.communicate(timeout=30)
    pids = _wait_for_pids(tmp_path, 3)
    assert sup.returncode == 3
    assert not any(_alive(p) for p in pids)


def test_workers_that_all_finish_cleanly_give_zero(tmp_path: Path) -> None:
    sup = _start(tmp_path, ["0", "0"])
    sup.communicate(timeout=30)
    assert sup.returncode == 0


def test_zero_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        spawn_workers(0, lambda i: ["true"])


def test_worker_naming_and_ports() -> None:
    assert worker_node_id(2, host="gw1") == "gw1-w2"
    assert [worker_port(8080, i) for i in range(3)] == [8080, 8081, 8082]


def test_worker_admin_ports_follow_the_worker() -> None:
    assert worker_admin("127.0.0.1:9180", 0) == "127.0.0.1:9180"
    assert worker_admin("127.0.0.1:9180", 2) == "127.0.0.1:9182"
    assert worker_admin("[::1]:9180", 1) == "[::1]:9181"
    with pytest.raises(ValueError, match="not HOST:PORT"):
        worker_admin("9180", 1)
