"""`socialguard run` as a user starts it: a real process, CA on first start, clean SIGTERM stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from conftest import TEST_RULES  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

# Blocked whatever the real time is, so the test does not depend on the clock.
ALWAYS_BLOCKED = TEST_RULES.replace(
    "rules:\n",
    "rules:\n  - id: never-tiktok\n    description: Not on this network\n    who: [staff]\n"
    "    what:\n      domains: [tiktok.com]\n    action: block\n",
)


def _start(
    tmp_path: Path, err: IO[str], *args: str, out: IO[str] | int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALWAYS_BLOCKED)
    cmd = [
        sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
        "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
        "--state", str(tmp_path / "state"), "--node", "cli", *args,
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stderr=err, stdout=out, text=True, env=env)


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _wait_for_port(proc: subprocess.Popen[str], err_path: Path) -> tuple[int, str]:
    text = ""
    for _ in range(600):  # bounded: up to a minute on a loaded machine
        text = err_path.read_text()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        if m:
            return int(m.group(1)), text
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no listening line:\n" + text)


def test_run_creates_the_ca_blocks_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = _start(tmp_path, err)
    try:
        port, text = _wait_for_port(proc, err_path)
        ca = tmp_path / "certs" / "mitmproxy-ca-cert.pem"
        assert f"CA certificate (created): {ca.resolve()}" in text
        res = subprocess.run(
            ["curl", "-sS", "--max-time", "15", "--noproxy", "", "-x", f"http://127.0.0.1:{port}",
             "-o", "/dev/null", "-w", "%{http_code}", "http://www.tiktok.com/"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert res.stdout == "403"
    finally:
        code = _stop(proc)
    assert code == 0
    records = []
    for f in sorted((tmp_path / "state" / "log").glob("*.jsonl")):
        records.extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
    assert [r["rule"] for r in records if r.get("type") == "decision"] == ["never-tiktok"]
    assert records[-1]["type"] == "file_close", "the decision log was closed on SIGTERM"


def test_run_in_wireguard_mode_prints_the_client_configuration(tmp_path: Path) -> None:
    """Roaming devices import this configuration; mitmproxy logs it, and embedded that log was
    dropped. Its keys must be the pair in the CA directory's wireguard.conf. The stop is clean:
    exit 0 (mitmproxy_rs crashed the interpreter's teardown about every other time) with the
    decision log closed."""
    from mitmproxy_rs import wireguard

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err_path, out_path = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    with err_path.open("w") as err, out_path.open("w") as out:
        proc = _start(
            tmp_path, err, "--mode", "wireguard", "--listen", f"127.0.0.1:{port}", out=out
        )
    try:
        _wait_for_port(proc, err_path)
        text = ""
        for _ in range(100):  # bounded: the listener logs it as it starts
            text = out_path.read_text()
            if "[Peer]" in text and "Endpoint" in text:
                break
            time.sleep(0.1)
    finally:
        assert _stop(proc) == 0
    conf = dict(re.findall(r"^(\w+) = (.+)$", text, re.MULTILINE))
    keys = json.loads((tmp_path / "certs" / "wireguard.conf").read_text())
    assert conf["PrivateKey"] == keys["client_key"]
    assert conf["PublicKey"] == wireguard.pubkey(keys["server_key"])
    assert conf["Endpoint"] == f"127.0.0.1:{port}"
    log = sorted((tmp_path / "state" / "log").glob("*.jsonl"))[-1].read_text().splitlines()
    assert json.loads(log[-1])["type"] == "file_close", "the decision log was closed on SIGTERM"


def test_run_refuses_a_broken_rules_file_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text(TEST_RULES.replace("action: block", "action: blok"))
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", "run", "--rules", str(rules), "--listen",
         "127.0.0.1:0", "--certs", str(tmp_path / "certs"), "--state", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2
    assert re.search(r"bad\.yaml:\d+", res.stderr), res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "socks"], "--mode: 'socks' is not one of regular, transparent, wireguard"),
        (["--listen", "8080"], "--listen: '8080' is not HOST:PORT"),
    ],
)
def test_run_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from socialguard.cli import app

    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    result = CliRunner().invoke(app, ["run", "--rules", str(rules), *args])
    assert result.exit_code == 2
    assert f"error: {message}" in result.output


def test_run_in_wireguard_mode_on_port_0_gives_the_bound_port(tmp_path: Path) -> None:
    """`--listen 127.0.0.1:0` picks a free port; the configuration devices import must name it,
    not `:0`."""
    err_path, out_path = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    with err_path.open("w") as err, out_path.open("w") as out:
        proc = _start(tmp_path, err, "--mode", "wireguard", out=out)
    try:
        port, _ = _wait_for_port(proc, err_path)
        text = ""
        for _ in range(100):  # bounded: the listener logs it as it starts
            text = out_path.read_text()
            if "Endpoint" in text:
                break
            time.sleep(0.1)
    finally:
        assert _stop(proc) == 0
    assert port != 0
    assert re.search(r"^Endpoint = (.+)$", text, re.MULTILINE)[1] == f"127.0.0.1:{port}"  # type: ignore[index]


def test_run_on_a_port_in_use_says_so_and_exits_2(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "socialguard", "run", "--rules", str(rules), "--listen",
             f"127.0.0.1:{port}", "--certs", str(tmp_path / "certs"),
             "--state", str(tmp_path / "state")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert res.returncode == 4, res.stdout + res.stderr  # the system refused
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: --listen 127.0.0.1:{port}: the address is in use (another proxy running?); "
        "choose another with --listen HOST:PORT"
    )
    assert "--mode regular@" not in res.stdout + res.stderr
