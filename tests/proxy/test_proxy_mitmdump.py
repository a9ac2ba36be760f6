"""The secondary entry point: `mitmdump -s addons/socialguard.py` loads the addon and enforces."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TEST_RULES  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
ALWAYS_BLOCKED = TEST_RULES.replace(
    "rules:\n",
    "rules:\n  - id: never-tiktok\n    description: Not on this network\n    who: [staff]\n"
    "    what:\n      domains: [tiktok.com]\n    action: block\n",
)


def _cmd(tmp_path: Path, *sets: str) -> list[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALWAYS_BLOCKED)
    args = [str(MITMDUMP), "-s", str(REPO / "addons" / "socialguard.py"),
            "--listen-host", "127.0.0.1", "--listen-port", "0",
            "--set", f"confdir={tmp_path / 'certs'}", "--set", f"socialguard_rules={rules}",
            "--set", f"socialguard_state={tmp_path / 'state'}"]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    return args


def test_a_refused_configuration_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    res = subprocess.run(_cmd(tmp_path, "socialguard_node=not a node!"), capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "socialguard: socialguard_node: 'not a node!' is not a valid node id" in out
    assert "Traceback" not in out


def test_mitmdump_lists_the_addons_options() -> None:
    script = str(REPO / "addons" / "socialguard.py")
    res = subprocess.run([str(MITMDUMP), "-s", script, "--options"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    names = set(re.findall(r"^(socialguard_\w+):", res.stdout, re.MULTILINE))
    assert {"socialguard_rules", "socialguard_state", "socialguard_log_dir"} <= names, res.stdout


def _listening(proc: subprocess.Popen[bytes], out: Path, host: str) -> int:
    for _ in range(600):  # bounded: up to a minute on a loaded machine
        m = re.search(rf"listening at {re.escape(host)}:(\d+)", out.read_text())
        if m:
            return int(m.group(1))
        assert proc.poll() is None, out.read_text()
        time.sleep(0.1)
    raise AssertionError(out.read_text())


def test_mitmdump_runs_with_socialguards_defaults(tmp_path: Path) -> None:
    """No confdir, listen host or connection strategy given: the CA goes in certs/, the proxy
    listens on loopback only, and connections are lazy (so a refused ClientHello is refused)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALWAYS_BLOCKED)
    out = tmp_path / "out.txt"
    argv = [
        str(MITMDUMP),
        "-s",
        str(REPO / "addons" / "socialguard.py"),
        "--listen-port",
        "0",
        "--set",
        f"socialguard_rules={rules}",
        "--set",
        f"socialguard_state={tmp_path / 's'}",
    ]
    with out.open("w") as f:
        proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "SOCIALGUARD_CERTS"},
        )
    try:
        port = _listening(proc, out, "127.0.0.1")
        assert (tmp_path / "certs" / "mitmproxy-ca.pem").is_file()
        res = subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "15",
                "--noproxy",
                "",
                "-x",
                f"http://127.0.0.1:{port}",
                "--cacert",
                str(tmp_path / "certs" / "mitmproxy-ca-cert.pem"),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "https://www.tiktok.com/",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert res.stdout == "403", res.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = out.read_text()
    bound = re.findall(r"listening at (\S+):\d+", text)
    assert bound[-1] == "127.0.0.1", text


def test_mitmdump_with_the_addon_blocks(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        proc = subprocess.Popen(
            _cmd(tmp_path, "connection_strategy=lazy"), stdout=f, stderr=subprocess.STDOUT
        )
    try:
        port = None
        for _ in range(600):  # bounded: up to a minute on a loaded machine
            m = re.search(r"listening at .*:(\d+)", out.read_text())
            if m:
                port = int(m.group(1))
                break
            assert proc.poll() is None, out.read_text()
            time.sleep(0.1)
        assert port, out.read_text()
        res = subprocess.run(
            ["curl", "-sS", "--max-time", "15", "--noproxy", "", "-x", f"http://127.0.0.1:{port}",
             "-o", "/dev/null", "-w", "%{http_code}", "http://www.tiktok.com/"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert res.stdout == "403"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
