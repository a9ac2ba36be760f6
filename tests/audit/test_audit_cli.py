"""`socialguard audit ...` as a user runs it: exit codes and messages.

The main paths run the real command in a subprocess; tables of bad input run the same typer app
in-process (CliRunner), since interpreter start-up dominates their cost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from audit_helpers import DENVER, Clock, event
from typer.testing import CliRunner, Result

from socialguard.audit import AuditLog
from socialguard.audit.checkpoints import generate_keypair
from socialguard.cli import app
from socialguard.engine.model import Action

ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def sg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", "audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
        cwd=cwd,
    )


def sg_in(*args: str) -> Result:
    """The same command, run in this process."""
    return CliRunner().invoke(app, ["audit", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture
def logged(tmp_path: Path, open_log, clock: Clock) -> Path:
    log = open_log(max_bytes=4096)
    for i in range(40):
        clock.advance(60)
        if i % 2:
            log.write(event("www.facebook.com", user=f"u{i % 4}"))
        else:
            log.write(event("example.org", user=f"u{i % 4}", action=Action.ALLOW, category=None))
    log.close()
    return tmp_path / "log"


def test_verify_without_a_key_says_self_consistent_only_and_exits_5(logged: Path) -> None:
    """With checkpoints on the same machine and no key, an intact chain proves only that it is
    self-consistent: someone with write access could have rewritten log and checkpoints alike."""
    r = sg("verify", str(logged), "--checkpoints", str(logged.parent / "checkpoints"))
    assert r.returncode == 5, r.stderr
    assert "n1-w0: intact" in r.stdout
    assert "OK, SELF-CONSISTENT ONLY" in r.stdout
    assert "anyone with write access to this machine could have rewritten it" in r.stdout


def test_a_block_changed_to_allow_and_resealed_with_its_checkpoints_is_still_self_consistent_only(
    logged: Path,
) -> None:
    """Issue 18's over-claim: a rewrite with hashes and checkpoints recomputed must not be told
    apart by a keyless verify, and so must not be called more than self-consistent."""
    from socialguard.audit.chain import seal, unseal

    victim = sorted(p for p in logged.iterdir() if p.name.endswith(".jsonl"))[-1]
    out, prev = [], None
    for raw in victim.read_bytes().splitlines(keepends=True):
        record, _, _ = unseal(raw)
        if prev is not None:
            record["prev"] = prev
        record.pop("h", None)
        if record.get("action") == "block":
            record["action"] = "allow"
        line, prev = seal(json.dumps(record, separators=(",", ":")).encode())
        out.append(line)
    victim.write_bytes(b"".join(out))
    cps = logged.parent / "checkpoints"
    for f in cps.iterdir():
        f.unlink()  # the attacker also rewrote (here: removed) the machine's checkpoints
    r = sg("verify", str(logged), "--checkpoints", str(cps))
    assert r.returncode != 0 and "OK, ANCHORED" not in r.stdout


def test_verify_with_the_auditors_key_says_anchored_and_exits_0(
    tmp_path: Path, clock: Clock
) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    log = AuditLog(tmp_path / "log", "n1", signing_key=tmp_path / "k.key", clock=clock)
    log.write(event())
    log.close()
    cps = ("--checkpoints", str(tmp_path / "checkpoints"))
    r = sg("verify", str(tmp_path / "log"), *cps, "--key", str(tmp_path / "k.pub"))
    assert r.returncode == 0, r.stderr
    assert "OK, ANCHORED" in r.stdout and "anchored: seq 1..3" in r.stdout


def test_verify_exits_1_naming_file_and_line_of_the_first_break(logged: Path) -> None:
    victim = sorted(p for p in logged.iterdir() if p.name.endswith(".jsonl"))[-1]
    lines = victim.read_bytes().splitlines(keepends=True)
    victim.write_bytes(b"".join([*lines[:2], lines[2].replace(b"u", b"U", 1), *lines[3:]]))
    r = sg("verify", str(logged))
    assert r.returncode == 1
    assert f"BROKEN n1-w0: {victim}:3: seq" in r.stderr and "hash mismatch" in r.stderr


def test_verify_json(logged: Path) -> None:
    r = sg_in("verify", str(logged), "--json")
    data = json.loads(r.stdout)
    assert r.exit_code == 5 and data["ok"] is True and data["chains"]["n1-w0"]["records"] > 40
    assert data["verdict"] == "self-consistent" and data["anchored"] is False


def test_verify_with_keys(tmp_path: Path, clock: Clock) -> None:
    generate_keypair(tmp_path / "keys" / "audit.key", tmp_path / "keys" / "audit.pub")
    log = AuditLog(
        tmp_path / "log",
        "n1",
        signing_key=tmp_path / "keys" / "audit.key",
        clock=clock,
        timezone=DENVER,
    )
    log.write(event())
    log.close()
    cps = ("--checkpoints", str(tmp_path / "checkpoints"))
    r = sg("verify", str(tmp_path / "log"), *cps, "--key", str(tmp_path / "keys" / "audit.pub"))
    assert r.returncode == 0, r.stderr
    generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    r2 = sg_in("verify", str(tmp_path / "log"), *cps, "--key", str(tmp_path / "other.pub"))
    assert r2.exit_code == 1 and "not the given key" in r2.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "/nonexistent/log"], "error: /nonexistent/log: no such log directory"),
        (["verify", "{log}", "--checkpoints", "/nonexistent/cp"], "no such checkpoint file"),
        (["verify", "{log}", "--key", "/nonexistent/k.pub"], "cannot read the key"),
        (["search", "--log-dir", "{log}", "--who", "bob"], "--who 'bob': expected user:NAME"),
        (["search", "--log-dir", "{log}", "--since", "someday"], "'someday': not a time"),
        (["search", "--log-dir", "{log}", "--json", "--csv"], "cannot be used together"),
        (["search", "--log-dir", "{log}", "--action", "deny"], "not an outcome (allow, block"),
        (["search", "--log-dir", "{log}", "--tz", "Mars/Olympus"], "not an IANA time zone"),
        (["prune", "--log-dir", "{log}", "--before", "soon"], "expected a date such as"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    logged: Path, args: list[str], message: str
) -> None:
    r = sg_in(*[a.replace("{log}", str(logged)) for a in args])
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_search_table_csv_and_json(logged: Path) -> None:
    r = sg("search", "--log-dir", str(logged), "--host", "facebook.com", "--who", "user:u1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "ACTION", "BASIS", "WHO"]
    assert len(lines) == 1 + 10 and all("user:u1" in x for x in lines[1:])
    assert "2026-11-24 10:" in lines[1]  # district time, not UTC
    r2 = sg_in("search", "--log-dir", str(logged), "--action", "block", "--csv", "--tz", "UTC")
    rows = list(csv.DictReader(io.StringIO(r2.stdout)))
    assert len(rows) == 20 and rows[0]["time"].startswith("2026-11-24 17:")
    r2 = sg_in("search", "--log-dir", str(logged), "--who", "user:u0", "--json")
    recs = [json.loads(x) for x in r2.stdout.splitlines()]
    assert len(recs) == 10 and {x["user"] for x in recs} == {"u0"}


def test_report_writes_html(logged: Path, tmp_path: Path) -> None:
    out = tmp_path / "board.html"
    r = sg("report", "--log-dir", str(logged), "--since", "2026-11-24", "--html", str(out))
    assert r.returncode == 0, r.stderr
    assert "blocked: 20" in r.stdout
    assert out.read_text().count("<svg") == 5
    r2 = sg_in("report", "--log-dir", str(logged), "--json")
    assert json.loads(r2.stdout)["blocked_by_person"] == {"user:u1": 10, "user:u3": 10}


def test_keygen_makes_a_0600_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    r = sg("keygen", "--out", str(tmp_path / "a.key"))
    assert r.returncode == 0 and "key id:" in r.stdout
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600
    assert (tmp_path / "a.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    r2 = sg_in("keygen", "--out", str(tmp_path / "a.key"))
    assert r2.exit_code == 2 and "refusing to overwrite" in r2.stderr


def test_prune_then_verify(logged: Path) -> None:
    before = len(list(logged.glob("decisions-*")))
    r0 = sg_in("prune", "--log-dir", str(logged), "--before", "2026-11-25", "--dry-run")
    assert r0.exit_code == 0 and "would remove" in r0.stdout
    assert len(list(logged.glob("decisions-*"))) == before
    r = sg("prune", "--log-dir", str(logged), "--before", "2026-11-25")
    assert r.returncode == 0 and "removed" in r.stdout
    assert len(list(logged.glob("decisions-*"))) == 1
    r2 = sg_in("verify", str(logged))
    assert r2.exit_code == 5, r2.stderr
    assert "pruned before 2026-11-25" in r2.stdout


def test_tail_shows_the_latest_and_follows_new_records(logged: Path, tmp_path: Path) -> None:
    r = sg_in("tail", "--log-dir", str(logged), "-n", "3")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "socialguard",
            "audit",
            "tail",
            "-f",
            "-n",
            "0",
            "--log-dir",
            str(logged),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        seen = b""
        log = AuditLog(logged, "n1-w0", checkpoint_dir=tmp_path / "checkpoints", timezone=DENVER)
        for _ in range(100):  # bounded: up to 100 polls of the follower's output
            log.write(event("tail-check.example", user="follower"))
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                seen += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if b"tail-check.example" in seen:
                break
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        log.close()
        assert b"user:follower" in seen and b"tail-check.example" in seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_commands_find_the_log_under_state(tmp_path: Path, clock: Clock) -> None:
    log = AuditLog(tmp_path / "var" / "log", "n1", clock=clock, timezone=DENVER)
    log.write(event())
    log.close()
    r = sg("verify", "--state", str(tmp_path / "var"))
    assert r.returncode == 5 and "n1: intact" in r.stdout
    r2 = CliRunner().invoke(
        app, ["audit", "search"], env={"SOCIALGUARD_LOG_DIR": str(tmp_path / "var" / "log")}
    )
    assert r2.exit_code == 0 and "www.facebook.com" in r2.stdout


@pytest.mark.parametrize("command", ["search", "report", "verify", "tail", "prune", "keygen"])
def test_every_audit_command_has_help_with_an_example(command: str) -> None:
    r = sg_in(command, "--help")
    assert r.exit_code == 0, r.output
    assert f"socialguard audit {command}" in " ".join(r.stdout.split())
