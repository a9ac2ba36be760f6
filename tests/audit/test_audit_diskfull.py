"""A full disk: the log refuses records while full (fails closed) and stays verifiable after.

Each test runs `diskfull_worker.py` in its own mount namespace (`unshare --mount`) on a real, small
tmpfs, so the kernel itself answers ENOSPC — mid-line, at rotation, at a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("diskfull_worker.py")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a private tmpfs",
)


def run_on_small_tmpfs(tmp_path: Path, size: str, *args: str) -> dict[str, object]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = (
        'mount --make-rprivate / && mount -t tmpfs -o size="$1" sgtest "$2" && shift 2 && exec "$@"'
    )
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            size,
            str(mnt),
            sys.executable,
            str(WORKER),
            str(mnt),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "max_bytes", ["65536", "8192", "0"], ids=["no-rotation", "rotating", "rotation-due-when-full"]
)
def test_a_full_disk_refuses_records_and_leaves_the_chain_verifiable(
    tmp_path: Path, max_bytes: str
) -> None:
    got = run_on_small_tmpfs(tmp_path, "256k", max_bytes)
    assert got["refused"] > 40  # failed closed while full (a page's slack may take a few)
    assert got["problems"] == [] and got["ok"] is True
    assert got["found"] == got["written"]  # every acknowledged record reads back
