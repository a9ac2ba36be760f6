"""The off-box anchor, against a real rsyslog on loopback: checkpoints reach the collector as they
are written (RFC 5424 over TCP), an outage is retried without blocking or losing anything, and
`verify --anchor` checks the log against the collector's copy."""

from __future__ import annotations

import json
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
from socialguard.audit.files import iter_lines, list_log_files
from socialguard.audit.shipping import CheckpointShipper
from socialguard.audit.verify import Verdict, verdict, verify_log

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
pytestmark = pytest.mark.skipif(not Path(RSYSLOGD).exists(), reason="rsyslog is not installed")


class Collector:
    """rsyslogd in the foreground, receiving TCP syslog on a loopback port into one file."""

    def __init__(self, root: Path, tls: bool = False) -> None:
        self.root = root
        self.tls = tls
        self.out = root / "received.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        conf = self.root / "rsyslog.conf"
        tls = (
            f'global(DefaultNetstreamDriverCAFile="{self.root / "ca.pem"}" '
            f'DefaultNetstreamDriverCertFile="{self.root / "cert.pem"}" '
            f'DefaultNetstreamDriverKeyFile="{self.root / "key.pem"}")\n'
            'module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
            'StreamDriver.AuthMode="anon")\n'
        )
        conf.write_text(
            f'global(workDirectory="{work}")\n'
            + (tls if self.tls else 'module(load="imtcp")\n')
            + f'input(type="imtcp" address="127.0.0.1" port="{self.port}")\n'
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

    def records(self) -> list[str]:
        """Decision-log records received, in order, each once (a resent batch repeats some)."""
        try:
            lines = self.out.read_text().splitlines()
        except FileNotFoundError:
            return []
        return list(dict.fromkeys(ln.strip() for ln in lines if '{"v":1,"seq":' in ln))

    def wait_for_records(self, n: int, seconds: float = 90) -> list[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(self.records()) < n:
            time.sleep(0.05)
        return self.records()

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


class _StoppedMidPass(CheckpointShipper):
    """A shipper whose first pass is overtaken by the writer: while the pass is under way (its
    view of the file already taken), one more line is written and stop() is called."""

    overtaken = False

    def _ship_pending(self) -> bool:
        ok = super()._ship_pending()
        if not self.overtaken:
            self.overtaken = True
            with self.source.open("a") as f:
                f.write('{"type":"checkpoint","seq":2,"reason":"shutdown"}\n')
            self._stop.set()
            self._wake.set()
        return ok


def test_a_line_written_while_a_pass_is_under_way_is_shipped_before_stop_returns(
    tmp_path: Path, collector: Collector
) -> None:
    source = tmp_path / "checkpoints-n1.jsonl"
    source.write_text('{"type":"checkpoint","seq":1,"reason":"requested"}\n')
    shipper = _StoppedMidPass(source, ("127.0.0.1", collector.port), hostname="vm")
    shipper.start()
    shipper._thread.join(timeout=30)
    shipper.stop()
    assert [json.loads(x)["seq"] for x in collector.wait_for(2, seconds=30)] == [1, 2]


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


def _local_records(log_dir: Path) -> list[str]:
    """Every record of the log, in chain order, across its files (plain and gzipped)."""
    out = []
    for lf in sorted(list_log_files(log_dir), key=lambda f: f.index):
        out += [raw.decode().strip() for _, raw in iter_lines(lf.path)]
    return out


def test_every_record_is_shipped_in_order_across_rotations_and_a_collector_restart(
    tmp_path: Path, clock: Clock, collector: Collector
) -> None:
    _ship_every_record(tmp_path, clock, collector, None)


def _tls_files(root: Path) -> None:
    """A CA and a certificate for 127.0.0.1 it signed: ca.pem, cert.pem, key.pem in `root`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test collector CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca.public_bytes(pem))
    (root / "cert.pem").write_bytes(cert.public_bytes(pem))
    (root / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


_OSSL = any(Path("/usr/lib").glob("*/rsyslog/lmnsd_ossl.so"))


@pytest.mark.skipif(not _OSSL, reason="rsyslog-openssl is not installed")
def test_every_record_is_shipped_over_tls_verified_against_the_collector_ca(
    tmp_path: Path, clock: Clock
) -> None:
    from socialguard.audit.shipping import tls_context

    c = Collector(tmp_path / "collector", tls=True)
    c.root.mkdir()
    _tls_files(c.root)
    c.start()
    try:
        _ship_every_record(tmp_path, clock, c, tls_context(str(c.root / "ca.pem")))
    finally:
        c.stop()


def _ship_every_record(tmp_path: Path, clock: Clock, collector: Collector, tls: object) -> None:
    log_dir = tmp_path / "log"
    log = AuditLog(
        log_dir, "n1", checkpoint_dir=tmp_path / "checkpoints", clock=clock, timezone=DENVER,
        max_bytes=4096, ship_to=("127.0.0.1", collector.port), ship_records=True, ship_tls=tls,
    )  # fmt: skip
    for i in range(20):  # several files: rotation by size, closed files gzipped
        clock.advance(5)
        log.write(event(f"h{i}.example"))
    local = _local_records(log_dir)
    assert len(list_log_files(log_dir)) >= 3
    assert collector.wait_for_records(len(local)) == local
    collector.stop()
    shipper = log.record_shipper
    assert shipper is not None
    for i in range(30):  # the collector is down: local logging goes on, and rotates
        clock.advance(5)
        log.write(event(f"down{i}.example"))
    log.checkpoint()  # wakes the shippers
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and shipper.stats.failures == 0:
        time.sleep(0.05)
    assert shipper.stats.failures > 0 and shipper.stats.backlog_bytes > 0
    collector.start()  # back: the backlog goes, from where it stopped, in order
    log.close()
    local = _local_records(log_dir)
    assert any(lf.gz for lf in list_log_files(log_dir))
    got = collector.wait_for_records(len(local))
    assert got == local
    assert [json.loads(r)["seq"] for r in got] == list(range(1, len(local) + 1))


@pytest.mark.parametrize("records", [False, True], ids=["checkpoints", "every-record"])
def test_socialguard_run_ships_its_checkpoints_and_shows_shipping_in_metrics(
    tmp_path: Path, collector: Collector, records: bool
) -> None:
    """With --audit-syslog-records every record goes too, and /metrics shows both shippers."""
    import sys
    import urllib.request

    from test_audit_proxy_crash import RULES, free_port

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    admin = free_port()
    args = [
        sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
        "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{admin}",
        "--state", str(tmp_path / "state"), "--certs", str(tmp_path / "certs"), "--node", "ship",
        "--audit-syslog", f"127.0.0.1:{collector.port}",
        *(["--audit-syslog-records"] if records else []),
    ]  # fmt: skip
    wanted = ["socialguard_audit_shipping_shipped "]
    if records:
        wanted.append("socialguard_audit_record_shipping_shipped ")
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            shipped = {name: 0.0 for name in wanted}
            deadline = time.monotonic() + 90  # the first checkpoint comes once the proxy is idle
            while time.monotonic() < deadline and min(shipped.values()) < 1 and proc.poll() is None:
                time.sleep(0.2)
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{admin}/metrics", timeout=5
                    ) as r:
                        text = r.read().decode()
                except OSError:
                    continue
                for line in text.splitlines():
                    if line.startswith(tuple(wanted)):
                        shipped[line.split()[0] + " "] = float(line.split()[1])
            assert min(shipped.values()) >= 1, shipped
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    local = (tmp_path / "state" / "checkpoints" / "checkpoints-ship.jsonl").read_text().splitlines()
    assert collector.wait_for(len(local)) == local  # the shutdown checkpoint too
    r = subprocess.run(
        [sys.executable, "-m", "socialguard", "audit", "verify", "--state", str(tmp_path / "state"),
         "--anchor", str(collector.out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0 and "OK, ANCHORED" in r.stdout, r.stdout + r.stderr
    local_records = _local_records(tmp_path / "state" / "log")
    if records:
        assert collector.wait_for_records(len(local_records)) == local_records
    else:
        assert collector.records() == []
