"""`socialguard run --workers N`: N proxy processes on consecutive ports, supervised as one service.

One mitmproxy process is one Python event loop on one core. A district larger than one core's
worth of new TLS connections runs several, each a full `socialguard run` on its own port (base
port + i), with its own node id (`<host>-w<i>`) and therefore its own decision-log chain — a hash
chain has one writer. They share the rules file, the overrides store and the CA. The nftables
ruleset printed by `socialguard deploy nftables --workers N` spreads clients over the ports by
source-address hash, so each client stays with one worker.

The supervisor is deliberately dumb: it forwards SIGTERM/SIGINT/SIGHUP to every worker, and when
any worker exits it stops the others and exits too. A partial set of workers would leave the
clients hashed to a dead port with refused connections; exiting lets systemd (Restart=on-failure)
or the container runtime restart the whole set cleanly.

Workers die with their supervisor: each asks the kernel (prctl PR_SET_PDEATHSIG) for SIGTERM when
the supervisor goes, however it goes — a SIGKILL included, where it has no chance to forward
anything. Without that, orphaned workers kept the ports and the restarted set could not listen.
SIGTERM rather than SIGKILL, so that each closes its decision log cleanly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

import structlog

__all__ = ["spawn_workers", "worker_admin", "worker_node_id", "worker_port"]

log = structlog.get_logger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(supervisor: int) -> Callable[[], None] | None:
    """A preexec_fn making the child get SIGTERM when `supervisor` dies (Linux); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != supervisor:  # it died between fork and prctl: nothing would signal us
            os._exit(1)

    return arm


def worker_node_id(i: int, host: str | None = None) -> str:
    """The node id of worker `i`: `<host>-w<i>`, which names its decision-log chain."""
    return f"{host or socket.gethostname()}-w{i}"


def worker_port(base_port: int, i: int) -> int:
    """Worker `i` listens on base_port + i (the ruleset's `--proxy-port` is the base)."""
    return base_port + i


def worker_admin(admin: str, i: int) -> str:
    """Worker `i`'s admin endpoint: the same host, port + i (`127.0.0.1:9180` → `…:9181` for w1).

    Each worker is a process with its own /healthz and /metrics; they cannot share one port.
    """
    host, sep, port = admin.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--admin: {admin!r} is not HOST:PORT")
    return f"{host}:{int(port) + i}"


def _exit_code(returncode: int) -> int:
    """A shell-style exit code: a worker killed by signal N reads as 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def spawn_workers(
    n: int,
    argv_for: Callable[[int], list[str]],
    *,
    grace_seconds: float = 20.0,
) -> int:
    """Run workers 0..n-1 (`argv_for(i)` is each one's argv) until they stop; return the code.

    Returns 0 when every worker exited cleanly — by itself with 0, or because the supervisor was
    asked to stop and forwarded the signal. Otherwise returns the first failing worker's exit code.
    Workers still running `grace_seconds` after they were asked to stop are killed.

    Must be called from the main thread (it installs signal handlers, and restores them on return).
    """
    if n < 1:
        raise ValueError(f"workers must be at least 1, got {n}")
    stopping = False
    procs: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    die_with_us = _die_with(os.getpid())
    try:
        for i in range(n):
            argv = argv_for(i)
            # preexec_fn is safe here: the supervisor runs no threads.
            procs.append(subprocess.Popen(argv, preexec_fn=die_with_us))  # noqa: PLW1509
            log.info("worker_started", worker=i, pid=procs[-1].pid, argv=argv)
        first_exit = _wait_for_first_exit(procs)
        if first_exit is not None and not stopping:
            i, code = first_exit
            log.warning("worker_exited", worker=i, code=code, action="stopping the others")
        _stop_all(procs, grace_seconds)
        codes = [_exit_code(p.returncode) for p in procs]
        return _supervisor_code(codes, stopping, first_exit)
    finally:
        for p in procs:  # only reached with live workers if Popen itself failed midway
            if p.poll() is None:
                p.kill()
                p.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait_for_first_exit(procs: Sequence[subprocess.Popen[bytes]]) -> tuple[int, int] | None:
    """Block until any worker exits; return (index, exit code)."""
    while True:  # ends when a worker exits; workers are long-running by design
        for i, p in enumerate(procs):
            code = p.poll()
            if code is not None:
                return i, _exit_code(code)
        time.sleep(POLL_SECONDS)


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], grace_seconds: float) -> None:
    """SIGTERM every live worker, then SIGKILL those still alive after the grace period."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_seconds
    for p in procs:
        remaining = max(deadline - time.monotonic(), 0.0)
        try:
            p.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            log.warning("worker_killed", pid=p.pid, after_seconds=grace_seconds)
            p.kill()
            p.wait()


def _supervisor_code(
    codes: Sequence[int], stopping: bool, first_exit: tuple[int, int] | None
) -> int:
    """0 if the set ended cleanly; else the code of the worker whose exit ended it."""
    if stopping:
        stop_codes = {0, *(128 + int(s) for s in FORWARDED_SIGNALS)}
        failing = [c for c in codes if c not in stop_codes]
        return failing[0] if failing else 0
    if first_exit is not None and first_exit[1] != 0:
        return first_exit[1]
    failing = [c for c in codes if c not in (0, 128 + int(signal.SIGTERM))]
    return failing[0] if failing else 0
