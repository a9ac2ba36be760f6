"""`socialguard run` refused at start-up: the cause on stderr, and the exit code the README gives.

2 is bad input (an invalid rules file, a damaged store file); 4 is the system refusing (a port in
use, a full or read-only state directory) — the same command works once that is fixed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

harness = sys.modules["socialguard_proxy_harness"]

pytestmark = pytest.mark.e2e


def _run(tmp_path: Path, *args: str, rules: str | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(rules or harness.TEST_RULES)
    base = [
        sys.executable, "-m", "socialguard", "run", "--rules", str(path),
        "--certs", str(tmp_path / "certs"), "--node", "start",
    ]  # fmt: skip
    if "--listen" not in args:
        base += ["--listen", "127.0.0.1:0"]
    if "--state" not in args:
        base += ["--state", str(tmp_path / "state")]
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [*base, *args], capture_output=True, text=True, timeout=90, check=False, env=env
    )


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_port_in_use_says_so_on_stderr_and_exits_4(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = _run(tmp_path, "--listen", f"127.0.0.1:{port}")
    assert res.returncode == 4, res.stderr
    assert "the address is in use" in res.stderr
    assert "see the messages above" not in res.stderr


def test_full_state_directory_says_so_and_exits_4(tmp_path: Path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    state = tmpfs("full", "size=64k")
    fd = os.open(state / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while True:  # bounded by the 64 KiB file system
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    res = _run(tmp_path, "--state", str(state))
    assert res.returncode == 4, res.stderr
    assert "no space left" in res.stderr.lower(), res.stderr


def test_read_only_state_directory_says_so_and_exits_4(tmp_path: Path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    state = tmpfs("ro", "ro,size=64k")
    res = _run(tmp_path, "--state", str(state))
    assert res.returncode == 4, res.stderr
    assert "read-only" in res.stderr.lower(), res.stderr


def test_invalid_rules_name_file_and_line_and_exit_2(tmp_path: Path) -> None:
    res = _run(tmp_path, rules=harness.TEST_RULES.replace("action: block", "action: blok"))
    assert res.returncode == 2, res.stderr
    assert "rules.yaml:" in res.stderr and "blok" in res.stderr


def test_zero_length_store_is_refused_with_its_reason_and_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "socialguard.db").write_bytes(b"")
    res = _run(tmp_path)
    assert res.returncode == 2, res.stderr
    assert "zero-length" in res.stderr
