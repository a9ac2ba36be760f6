"""The off-box anchor, against a real rsyslog on loopback: checkpoints reach the collector as they
are written (RFC 5424 over TCP), an outage is retried without blocking or losing anything, and
`verify --anchor` checks the log against the collector's copy."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import DENVER, Clock, event

from socialguard.audit import AuditLog
from socialguard.audit.verify import Verdict, verdict, verify_log

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
pytestmark = pytest.mark.skipif(not Path(RSYSLOGD).exists(), reason="rsyslog is not installed")


class Collector:
    """rsyslogd in the foreground, receiving TCP syslog on a loopback port into one file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "received.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        conf = self.root / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{work}")\n'
            'module(load="imtcp")\n'
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}")\n'
            'template(name="msgonly" type="string" string="%msg%\\n")\n'
            f'*.* action(type="omfile" file="{self.out}" template="msgonly")\n'
        )
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.root / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsyslogd did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None

    def received(self) -> list[str]:
        """Checkpoints received, in order, each once (a batch cut by an outage is sent again)."""
        try:
            lines = self.out.read_text().splitlines()
        except FileNotFoundError:
            return []
        return list(dict.fromkeys(ln.strip() for ln in lines if '"type":"checkpoint"' in ln))

    def wait_for(self, n: int, seconds: float = 90) -> list[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(self.received()) < n:
            time.sleep(0.05)
        return self.received()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "collector")
    c.root.mkdir()
    c.start()
    yield c
    c.stop()


def _local(cp_dir: Path) -> list[str]:
    return (cp_dir / "checkpoints-n1.jsonl").read_text().splitlines()


def test_checkpoints_reach_the_collector_and_verify_anchors_on_its_copy(
    tmp_path: Path, clock: Clock, collector: Collector
) -> None:
    cp = tmp_path / "checkpoints"
    log = AuditLog(
        tmp_path / "log", "n1", checkpoint_dir=cp, clock=clock, timezone=DENVER,
        ship_to=("127.0.0.1", collector.port),
    )  # fmt: skip
    for _ in range(3):
        log.write(event())
        log.checkpoint()
    log.close()
    local = _local(cp)
    assert collector.wait_for(len(local)) == local  # as written, in order
    # the collector's copy anchors the log, without any key
    result = verify_log(tmp_path / "log", anchor=collector.out)
    assert verdict(result) is Verdict.ANCHORED
    # and a rewrite the local checkpoints were rewritten to match is still caught by it
    for p in (tmp_path / "log").glob("decisions-*.jsonl*"):
        p.unlink()
    cp_file = cp / "checkpoints-n1.jsonl"
    cp_file.write_text("")
    forged = AuditLog(tmp_path / "log", "n1", checkpoint_dir=cp, clock=clock, timezone=DENVER)
    forged.write(event(user="someone-else"))
    forged.close()
    assert verdict(verify_log(tmp_path / "log", checkpoints=cp, anchor=collector.out)) in (
        Verdict.BROKEN,
        Verdict.INCOMPLETE,
    )


def test_an_outage_blocks_nothing_loses_nothing_and_is_retried(
    tmp_path: Path, clock: Clock, collector: Collector
) -> None:
    cp = tmp_path / "checkpoints"
    log = AuditLog(
        tmp_path / "log", "n1", checkpoint_dir=cp, clock=clock, timezone=DENVER,
        ship_to=("127.0.0.1", collector.port),
    )  # fmt: skip
    log.write(event())
    log.checkpoint()
    assert len(collector.wait_for(1)) == 1
    collector.stop()
    for _ in range(5):  # the collector is down: local logging goes on
        log.write(event())
        log.checkpoint()
    shipper = log.shipper
    assert shipper is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and shipper.stats.failures == 0:
        time.sleep(0.05)
    assert shipper.stats.failures > 0 and shipper.stats.backlog_bytes > 0
    collector.start()  # back: the backlog is shipped by the retries
    local = _local(cp)
    assert collector.wait_for(len(local)) == local
    log.close()
    assert collector.wait_for(len(_local(cp))) == _local(cp)
