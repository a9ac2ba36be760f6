"""The secondary entry point: `mitmdump -s addons/socialguard.py` loads the addon and enforces."""

from __future__ import annotations

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


def test_mitmdump_refuses_to_start_unless_lazy(tmp_path: Path) -> None:
    res = subprocess.run(_cmd(tmp_path), capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert "connection_strategy=lazy" in res.stdout + res.stderr


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
