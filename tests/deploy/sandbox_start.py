"""Start `socialguard run` as a packaging would, in a private mount namespace that mirrors it; print
what happened as JSON. Not a test module: `test_deploy_sandboxed_start.py` runs it as root.

The spec (JSON, argv[1]) gives the packaging's facts: the writable paths (systemd's
ReadWritePaths= and StateDirectory=/LogsDirectory=, or the image's volumes), whether everything
else is read-only (ProtectSystem=strict), the user, environment, working directory and command.
Set-up follows the README's install steps (rules in /etc/socialguard, `ca init` then chown of the
certs to the service user); then the proxy is started as that user, asked for /healthz, sent one
request, stopped with SIGTERM, started and stopped again, and `socialguard audit verify` is run
as that user with the public key the first start printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def _overlay(path: str, scratch: Path) -> None:
    """A writable layer over a host directory, so the namespace can add /etc/socialguard or
    /var/lib/socialguard without touching the host."""
    name = path.strip("/").replace("/", "_")
    up, work = scratch / f"{name}-up", scratch / f"{name}-work"
    up.mkdir()
    work.mkdir()
    sh("mount", "-t", "overlay", "overlay", "-o",
       f"lowerdir={path},upperdir={up},workdir={work}", path)  # fmt: skip


def _expose_interpreter(scratch: Path) -> None:
    """The test's Python lives under /root (mode 0700 here); the service user must run it, as it
    runs /opt/socialguard in a real installation. Re-mount it under a traversable /root."""
    real = Path(os.path.realpath(sys.executable))
    if not str(real).startswith("/root/"):
        return
    top = Path("/root") / real.relative_to("/root").parts[0]
    keep = scratch / "keep"
    keep.mkdir()
    sh("mount", "--bind", str(top), str(keep))
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "rootdir", "/root")
    top.mkdir()
    sh("mount", "--move", str(keep), str(top))


def _read_only_except(writable: list[str]) -> None:
    """ProtectSystem=strict: every mount read-only but /dev, /proc, /sys and the writable paths."""
    for p in writable:
        sh("mount", "--bind", p, p)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mp in mounts:
        if mp in writable or mp.startswith(("/proc", "/sys", "/dev")):
            continue
        subprocess.run(["mount", "-o", "remount,bind,ro", mp], check=False)
    _private_tmp()


def _private_tmp() -> None:
    """PrivateTmp=yes. A checkout under /tmp (a CI clone may be one) is carried into the new /tmp
    at its own path: it stands for /opt/socialguard, which the real unit and image see."""
    checkout = Path(__file__).resolve().parents[2]
    if not checkout.is_relative_to("/tmp"):
        sh("mount", "-t", "tmpfs", "privatetmp", "/tmp")
        return
    hold = Path("/dev/shm") / f"socialguard-checkout-{os.getpid()}"  # /dev stays writable
    hold.mkdir()
    sh("mount", "--bind", str(checkout), str(hold))
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "privatetmp", "/tmp")
    checkout.mkdir(parents=True)
    for parent in checkout.relative_to("/tmp").parents:  # traversable by the service user
        (Path("/tmp") / parent).chmod(0o755 if parent != Path(".") else 0o1777)
    sh("mount", "--bind", str(hold), str(checkout))  # read-only, as the host's mounts now are
    sh("umount", str(hold))
    hold.rmdir()


def _setup(spec: dict[str, Any], scratch: Path) -> None:
    os.unshare(os.CLONE_NEWNS)
    sh("mount", "--make-rprivate", "/")
    sh("mount", "-t", "tmpfs", "-o", "mode=755", "scratch", str(scratch))
    _expose_interpreter(scratch)
    for top in ("/etc", "/var", "/opt"):
        _overlay(top, scratch)
    uid = spec["uid"]
    for d in spec["writable"]:
        Path(d).mkdir(parents=True, exist_ok=True)
        os.chown(d, uid, uid)
        os.chmod(d, 0o750)
    rules_dir = Path(spec["rules_dir"])
    rules_dir.mkdir(parents=True, exist_ok=True)
    for f in Path(spec["shipped_rules"]).iterdir():
        (shutil.copytree if f.is_dir() else shutil.copy2)(f, rules_dir / f.name)
    certs = Path(spec["certs"])
    sh(spec["socialguard"], "ca", "init", "--certs", str(certs))
    for p in [certs, *certs.rglob("*")]:
        os.chown(p, uid, uid)  # README: chown -R socialguard: /etc/socialguard/certs
    if spec["strict"]:
        _read_only_except(spec["writable"])


def _as_user(spec: dict[str, Any]) -> list[str]:
    u = str(spec["uid"])
    return ["setpriv", "--reuid", u, "--regid", u, "--clear-groups", "--no-new-privs"]


def _healthy(admin_port: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/healthz", timeout=2) as r:
                return int(r.status)
        except OSError:
            time.sleep(0.2)
    return 0


def _start_and_stop(spec: dict[str, Any]) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **spec["env"]}
    proc = subprocess.Popen(
        [*_as_user(spec), *spec["argv"]],
        cwd=spec["cwd"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    health = _healthy(spec["admin_port"], proc)
    if health:
        try:  # one request through the proxy: a decision to log
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{spec['port']}"})
            )
            opener.open("http://www.facebook.com/", timeout=10).close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=30)
    return {"healthz": health, "rc": proc.returncode, "output": out.decode(errors="replace")}


def main() -> None:
    spec = json.loads(sys.argv[1])
    scratch = Path(spec["scratch"])
    _setup(spec, scratch)
    first = _start_and_stop(spec)
    second = _start_and_stop(spec)
    key = Path(spec["key"])
    result: dict[str, Any] = {"first": first, "second": second}
    if key.exists():
        st = key.stat()
        result["key"] = {"mode": st.st_mode & 0o777, "uid": st.st_uid}
    cps = sorted(Path(spec["checkpoint_dir"]).glob("checkpoints-*.jsonl"))
    result["checkpoints"] = [
        json.loads(line) for p in cps for line in p.read_text().splitlines() if line.strip()
    ]
    verify = subprocess.run(
        [
            *_as_user(spec),
            spec["socialguard"],
            "audit",
            "verify",
            "--key",
            str(key.with_suffix(".pub")),
        ],
        cwd=spec["cwd"],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **spec["env"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result["verify"] = {"rc": verify.returncode, "out": verify.stdout, "err": verify.stderr}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
