"""Real OS accounts for the roles tests: users and groups made for one test, removed after it.

Each test gets fresh names (`sg` + random hex), so tests running side by side never share an
account. Commands run as those users through `runuser`, the way an administrator logged in on the
gateway would run them; the interpreter under /root is made reachable to each test user alone
with a POSIX ACL (removed at teardown), never by opening /root to everyone.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOCIALGUARD = REPO / ".venv" / "bin" / "socialguard"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates OS users: needs root")


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (apt-get install {tool})")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _blocking_dirs() -> list[Path]:
    """Directories on the way to the interpreter, the venv and the checkout that other accounts
    cannot pass (such as /root, 0700)."""
    out: list[Path] = []
    for target in (Path(os.path.realpath(sys.executable)), Path(sys.base_prefix), REPO):
        for d in [target, *target.parents] if target.is_dir() else target.parents:
            if d.is_dir() and not os.stat(d).st_mode & 0o001 and d not in out:
                out.append(d)
    return out


@dataclass
class Accounts:
    """Creates users and groups; `remove()` deletes every one it made."""

    tag: str = field(default_factory=lambda: "sg" + secrets.token_hex(3))
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    acls: list[tuple[Path, str]] = field(default_factory=list)

    def group(self, suffix: str) -> str:
        name = f"{self.tag}{suffix}"
        _run("groupadd", name)
        self.groups.append(name)
        return name

    def user(self, suffix: str, *groups: str) -> str:
        name = f"{self.tag}{suffix}"
        cmd = ["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name]
        if groups:
            cmd[1:1] = ["-G", ",".join(groups)]
        _run(*cmd)
        self.users.append(name)
        for d in _blocking_dirs():
            _run("setfacl", "-m", f"u:{name}:x", str(d))
            self.acls.append((d, name))
        return name

    def uid(self, name: str) -> int:
        return pwd.getpwnam(name).pw_uid

    def remove(self) -> None:
        for d, name in self.acls:
            subprocess.run(
                ["setfacl", "-x", f"u:{name}", str(d)], check=False, capture_output=True, timeout=60
            )
        for name in self.users:
            subprocess.run(["userdel", name], check=False, capture_output=True, timeout=60)
        for name in self.groups:
            subprocess.run(["groupdel", name], check=False, capture_output=True, timeout=60)


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    for tool in ("useradd", "groupadd", "runuser", "setfacl"):
        _need(tool)
    made = Accounts()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside /tmp/pytest-of-root (0700), which other accounts can pass through."""
    base = Path(tempfile.mkdtemp(prefix="sg-roles-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_as(
    user: str | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`socialguard ARGS` as `user` (through runuser; None: as root, this process's user), with
    only the environment given (plus PATH): nothing of the test runner's leaks in."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
    pairs = [f"{k}={v}" for k, v in base.items()]
    cmd = ["env", "-i", *pairs, str(SOCIALGUARD), *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
