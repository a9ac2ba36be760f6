"""`socialguard run --workers N` whose supervisor is SIGKILLed: the workers go with it.

Before, they lived on as orphans holding the ports, so systemd's restart met "address already in
use" and the set could not come back.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

harness = sys.modules["socialguard_proxy_harness"]

pytestmark = pytest.mark.e2e


def _free_port_pair() -> int:
    for _ in range(50):  # bounded
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two consecutive free ports")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_workers_die_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(harness.TEST_RULES)
    port = _free_port_pair()
    err = tmp_path / "err.txt"
    with err.open("w") as errf:
        sup = subprocess.Popen(
            [sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
             "--certs", str(tmp_path / "certs"), "--state", str(tmp_path / "state"),
             "--listen", f"127.0.0.1:{port}", "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=errf, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
    workers: list[int] = []
    try:
        for _ in range(600):  # bounded: a minute on a loaded machine
            if len(re.findall(r"listening on", err.read_text())) >= 2:
                break
            assert sup.poll() is None, err.read_text()
            time.sleep(0.1)
        workers = _children(sup.pid)
        assert len(workers) == 2
        sup.send_signal(signal.SIGKILL)
        sup.wait(timeout=10)
        for _ in range(300):  # bounded: 30 s for a clean stop of both
            if not any(_alive(w) for w in workers):
                break
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "orphaned workers survived the supervisor"
        assert _bindable(port) and _bindable(port + 1)
    finally:
        if sup.poll() is None:
            sup.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
