"""Issue 17, item 8: a YAML alias bomb ("billion laughs") in a rules file is a located error,
read in bounded memory: by `socialguard rules check` and by the running proxy's hot reload (the
last good policy stays in force).

Every process here runs under an address-space limit, so a loader that expands the bomb fails
with MemoryError (no file:line) instead of taking the shared machine's memory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from conftest import TEST_RULES  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

ADDRESS_SPACE = 3 << 30  # the proxy's own needs are far below; the expanded bomb far above
# nine levels of nine: 9**9 (387 million) strings once expanded


def bomb(indent: str = "") -> str:
    """`lol:` holding nine levels of nine aliases, each line indented by `indent`."""
    lines = ["lol:", "  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for a, b in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {b}: &{b} [{', '.join([f'*{a}'] * 9)}]")
    return "".join(f"{indent}{line}\n" for line in lines)


BOMB = bomb()
BOMB_LINE = 3  # where the first alias is, once the bomb is appended after the rules' last line
ALWAYS_BLOCKED = TEST_RULES.replace(
    "rules:\n",
    "rules:\n  - id: never-tiktok\n    description: Not on this network\n    who: [staff]\n"
    "    what:\n      domains: [tiktok.com]\n    action: block\n",
)


LIMITED = ["prlimit", f"--as={ADDRESS_SPACE}", "--", sys.executable, "-m", "socialguard"]


def _bomb_line(text: str) -> int:
    return text.count("\n") + BOMB_LINE


def test_rules_check_reports_an_alias_bomb_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "policy.yaml"
    rules.write_text(TEST_RULES + BOMB)
    res = subprocess.run(
        [*LIMITED, "rules", "check", str(rules)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "MemoryError" not in out
    assert f"{rules}:{_bomb_line(TEST_RULES)}:" in out, out
    assert "alias" in out


def test_an_alias_bomb_in_the_device_inventory_is_a_located_error(tmp_path: Path) -> None:
    inventory = tmp_path / "devices.yaml"
    inventory.write_text("- device: d1\n  ip: 10.0.0.1\n  " + bomb("  ").lstrip())
    rules = tmp_path / "policy.yaml"
    staff = "    networks: [127.0.0.0/8"
    rules.write_text(TEST_RULES.replace(staff, "    devices: devices.yaml\n" + staff))
    res = subprocess.run(
        [*LIMITED, "rules", "check", str(rules)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert f"{inventory}:{2 + BOMB_LINE}:" in out, out


def _start(tmp_path: Path, err: IO[str]) -> subprocess.Popen[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALWAYS_BLOCKED)
    cmd = [
        *LIMITED, "run", "--rules", str(rules),
        "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
        "--state", str(tmp_path / "state"), "--node", "bomb",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL, text=True, env=env)


def _wait_for(err_path: Path, proc: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    text = ""
    for _ in range(1200):  # bounded: two minutes on a loaded machine
        text = err_path.read_text()
        found = re.search(pattern, text)
        if found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in the proxy's log:\n{text[-3000:]}")


def _status(port: int, url: str) -> str:
    res = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--noproxy", "", "-x", f"http://127.0.0.1:{port}",
         "-o", "/dev/null", "-w", "%{http_code}", url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return res.stdout


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_hot_reload_of_an_alias_bomb_is_rejected_and_the_last_policy_stays(
    tmp_path: Path,
) -> None:
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = _start(tmp_path, err)
    try:
        port = int(_wait_for(err_path, proc, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        assert _status(port, "http://www.tiktok.com/") == "403"
        idle = _rss_mb(proc.pid)
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALWAYS_BLOCKED.replace("tiktok.com]", "example.invalid]") + BOMB)
        _wait_for(err_path, proc, r"rules_rejected")
        assert proc.poll() is None, "the proxy must survive a bad rules file"
        assert _status(port, "http://www.tiktok.com/") == "403", "the last good policy stays"
        text = err_path.read_text()
        assert re.search(rf"{re.escape(str(rules))}:{_bomb_line(ALWAYS_BLOCKED)}:.*alias", text), (
            text[-3000:]
        )
        assert _rss_mb(proc.pid) < idle + 100
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
