"""Another account on the proxy's host reads nothing of the service's state, keys or log.

The overrides store holds the key that signs the block page's form tokens: whoever reads it mints
valid emergency tokens. The CA key lets its holder impersonate every site to every district
device. So the store, the CA and the signing keys are the service's alone (files 0600, the CA
directory 0700); the decision log and its checkpoints are the service's and the auditors' group's
(directories 2750, so files take the directory's group; files 0640); nothing is readable by
others. Each case runs the real `socialguard` as a process, with a permissive umask (022) as a
shell would give it, and reads the modes of what it created.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from socialguard_proxy_harness import TEST_RULES  # type: ignore[import-not-found]  # conftest loads it

pytestmark = pytest.mark.e2e

START_WAIT_S = 60.0  # bounded wait for `socialguard run` to serve /healthz


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALGUARD_")}
    return env


PERMISSIVE = 0o022  # the umask a login shell gives: the product must not rely on a strict one


def sg(*args: str | Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=run_env(),
        umask=PERMISSIVE,
    )
    assert res.returncode == 0, res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while True:
        assert proc.poll() is None, "socialguard run exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"no /healthz after {START_WAIT_S} s"
            time.sleep(0.2)


@pytest.fixture
def run_proxy(tmp_path: Path) -> Iterator[object]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        admin = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
             "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
             "--state", str(tmp_path / "state"), "--admin", f"127.0.0.1:{admin}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env(),
            umask=PERMISSIVE,
        )  # fmt: skip
        started.append(proc)
        wait_healthy(proc, admin)
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

    yield start, stop
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def nothing_for_others(root: Path) -> None:
    """No file or directory under `root` grants anything to other accounts."""
    for path in [root, *root.rglob("*")]:
        assert mode(path) & 0o007 == 0, f"{path} is {oct(mode(path))}"


def test_socialguard_run_keeps_its_secrets_and_log_from_other_accounts(
    run_proxy: tuple[object, object], tmp_path: Path
) -> None:
    start, stop = run_proxy
    stop(start())  # type: ignore[operator]
    stop(start())  # type: ignore[operator]  # the second start compresses the first file
    state, certs = tmp_path / "state", tmp_path / "certs"
    log, checkpoints = state / "log", state / "checkpoints"

    assert mode(state) == 0o750  # the auditors' group passes through to the log
    assert mode(state / "socialguard.db") == 0o600  # holds the form-signing secret
    for side in ("socialguard.db-wal", "socialguard.db-shm"):
        if (state / side).exists():
            assert mode(state / side) == 0o600
    assert mode(certs) == 0o700
    assert mode(certs / "mitmproxy-ca.pem") == 0o600
    for directory in (log, checkpoints):
        assert mode(directory) == 0o2750  # new files take the directory's (auditors') group
        for f in directory.iterdir():
            if not f.name.startswith("."):
                assert mode(f) == 0o640, f"{f} is {oct(mode(f))}"
    assert list(log.glob("*.jsonl.gz")), "a closed file was compressed"
    nothing_for_others(tmp_path / "state")
    nothing_for_others(certs)


def test_cli_commands_create_state_and_keys_for_the_service_alone(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    state = tmp_path / "state"
    sg("grant", "add", "--who", "user:jdoe", "--site", "facebook.com", "--for", "1h",
       "--reason", "Yearbook", "--rules", rules, "--state", state)  # fmt: skip
    sg("audit", "keygen", "--state", state)
    sg("ca", "init", "--certs", tmp_path / "certs")

    assert mode(state) == 0o750
    assert mode(state / "socialguard.db") == 0o600
    assert mode(state / "audit-signing.key") == 0o600
    assert mode(tmp_path / "certs") == 0o700
    nothing_for_others(state)
    nothing_for_others(tmp_path / "certs")


def test_a_store_left_readable_by_an_older_version_is_tightened_when_opened(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    sg("grant", "list", "--state", state)
    db = state / "socialguard.db"
    db.chmod(0o644)
    state.chmod(0o755)
    sg("grant", "list", "--state", state)
    assert mode(db) == 0o600
    nothing_for_others(state)
