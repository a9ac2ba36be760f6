"""The systemd unit and the Docker image start, sign and verify with their shipped layout.

Neither systemd (not PID 1 here) nor a container engine (no daemon) can run in this test
environment, so each packaging is mirrored in a private mount namespace (`sandbox_start.py`):
the unit with ProtectSystem=strict (every mount read-only) but its ReadWritePaths, PrivateTmp, its
user and its Environment=; the image with its volumes, ENV, WORKDIR and ENTRYPOINT/CMD as uid
10001. The facts come from the shipped files themselves, so changing the unit or the Dockerfile
changes what is tested. Only the listening ports are moved to free loopback ports, and
/opt/socialguard/bin/socialguard is this checkout's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_deploy_packaging import (
    DOCKERFILE,
    REPO,
    exec_form,
    final_stage,
    instructions,
    unit_settings,
)

SANDBOX = Path(__file__).with_name("sandbox_start.py")
SOCIALGUARD = str(Path(sys.executable).with_name("socialguard"))
IMAGE_UID = 10001

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (mount namespaces) and setpriv(1)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local_argv(argv: list[str], port: int, admin: int) -> list[str]:
    """The packaging's command with this checkout's socialguard and free loopback ports."""
    out = [SOCIALGUARD if a.endswith("/socialguard") or a == "socialguard" else a for a in argv]
    for i, a in enumerate(out[:-1]):
        if a == "--listen":
            out[i + 1] = f"127.0.0.1:{port}"
        elif a == "--admin":
            out[i + 1] = f"127.0.0.1:{admin}"
    return out


def run_sandbox(spec: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    spec = {**spec, "scratch": str(scratch), "socialguard": SOCIALGUARD,
            "shipped_rules": str(REPO / "rules")}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(SANDBOX), json.dumps(spec)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def unit_spec() -> dict[str, Any]:
    s = unit_settings()
    env = dict(e.split("=", 1) for e in s["Environment"])
    writable = s["ReadWritePaths"][0].split()
    port, admin = free_port(), free_port()
    state = env["SOCIALGUARD_STATE"]
    return {
        "uid": IMAGE_UID,  # the unit's DynamicUser-less `socialguard`: any unprivileged uid
        "writable": writable,
        "strict": s["ProtectSystem"] == ["strict"],
        "env": env,
        "cwd": s["WorkingDirectory"][0],
        "argv": _local_argv(shlex.split(s["ExecStart"][0]), port, admin),
        "port": port,
        "admin_port": admin,
        "rules_dir": str(Path(env["SOCIALGUARD_RULES"]).parent),
        "certs": env["SOCIALGUARD_CERTS"],
        "key": f"{state}/audit-signing.key",
        "checkpoint_dir": f"{state}/checkpoints",
    }


def image_spec() -> dict[str, Any]:
    stage = final_stage(instructions(DOCKERFILE))
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            env.update(dict(shlex.split(kv)[0].split("=", 1) for kv in shlex.split(args)))
    volumes = next(json.loads(args) for word, args in stage if word == "VOLUME")
    user = next(args for word, args in stage if word == "USER")
    workdir = next(args for word, args in stage if word == "WORKDIR")
    entry = next(exec_form(args) for word, args in stage if word == "ENTRYPOINT")
    cmd = next(exec_form(args) for word, args in stage if word == "CMD")
    assert user.split(":")[0] == "socialguard"
    port, admin = free_port(), free_port()
    state = env["SOCIALGUARD_STATE"]
    rules_volume = str(Path(env["SOCIALGUARD_RULES"]).parent)
    return {
        "uid": IMAGE_UID,
        # the image's root file system is read-only to uid 10001 but for its volumes (the rules
        # volume is mounted read-only: README's `-v ...:ro`)
        "writable": [v for v in volumes if v != rules_volume],
        "strict": True,
        "env": {k: v for k, v in env.items() if k != "PATH"},
        "cwd": workdir,
        "argv": _local_argv([*entry, *cmd], port, admin),
        "port": port,
        "admin_port": admin,
        "rules_dir": rules_volume,
        "certs": env["SOCIALGUARD_CERTS"],
        "key": f"{state}/audit-signing.key",
        "checkpoint_dir": f"{state}/checkpoints",
    }


@pytest.mark.parametrize("packaging", [unit_spec, image_spec], ids=["systemd-unit", "docker-image"])
def test_the_shipped_layout_starts_signs_and_verifies(packaging: Any, tmp_path: Path) -> None:
    got = run_sandbox(packaging(), tmp_path)
    first, second = got["first"], got["second"]
    assert first["healthz"] == 200, first["output"][-3000:]
    assert first["rc"] == 0 and second["healthz"] == 200 and second["rc"] == 0, second["output"]
    # first start made the key (0600, the service's own) and printed its public half
    assert "audit signing key (created)" in first["output"]
    assert "fingerprint" in first["output"]
    assert "audit signing key (using)" in second["output"]
    assert got["key"] == {"mode": 0o600, "uid": IMAGE_UID}
    # every checkpoint signed with it, and the auditor's verify with the public key passes
    assert got["checkpoints"] and all(cp["sig"] for cp in got["checkpoints"])
    assert got["verify"]["rc"] == 0, got["verify"]
