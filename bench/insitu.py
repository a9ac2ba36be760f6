"""Timing socialguard's own code inside a proxy under load (`compare_revisions.py --in-situ`).

What the addon adds to a request under load cannot be read off a warm loop: between two of its
calls mitmproxy runs a few milliseconds of its own work, which evicts the addon's code and data
from the caches, and the request hook that takes 28 µs in a warm loop took 95 µs there (its
write syscall 4.6 against 19.5). The difference between two proxies' CPU per request finds it
only to +-30 µs. So a proxy process started with a timing file wraps the addon's request hooks
and its decision log's writes in per-call timers of the thread's CPU, and writes their sums to
that file every second; a change to the hot path is then judged by what it saves where it runs.

Each timer reads the thread's CPU clock twice, about a microsecond (a syscall), counted in what
it times; the timed variants' requests per CPU-second are low by about as much per timer. Keep
what is timed coarse: timers around a few µs of work disturb it (timed alone, the record's
SHA-256 seemed to save 4 µs with a change that saved 1.6 on the whole call).
Not a benchmark itself (`run_all.py` runs `bench_*.py` only).
"""

from __future__ import annotations

import json
import os
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (what, module, class, method): the methods that a revision lacks are skipped, so that older trees
# can be timed beside this one.
TIMED = (
    ("requestheaders hook", "socialguard.proxy.addon", "SocialGuard", "requestheaders"),
    ("request hook", "socialguard.proxy.addon", "SocialGuard", "request"),
    ("decision record", "socialguard.proxy.addon", "SocialGuard", "_record_plain"),
    ("  sealed and written", "socialguard.audit.writer", "AuditLog", "write_encoded"),
)
WRITE = "    os.write"
FILE = "hook-times.json"  # in each timed proxy's run directory


def _timed(func: Callable[..., Any], acc: list[int]) -> Callable[..., Any]:
    clock = time.thread_time_ns

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return func(*args, **kwargs)
        finally:
            acc[0] += 1
            acc[1] += clock() - start

    return timed


def install(out: Path) -> None:
    """Wrap what `TIMED` names (and the decision log's `os.write`) in timers; write their
    calls and nanoseconds to `out` as JSON every second, from a daemon thread."""
    import importlib

    totals: dict[str, list[int]] = {}
    for what, module, owner, attr in TIMED:
        cls = getattr(importlib.import_module(module), owner)
        func = getattr(cls, attr, None)
        if func is not None:
            setattr(cls, attr, _timed(func, totals.setdefault(what, [0, 0])))
    writer = importlib.import_module("socialguard.audit.writer")
    shadow = types.ModuleType("os")  # the writer's `os`, with a timed write
    shadow.__dict__.update(os.__dict__)
    shadow.write = _timed(os.write, totals.setdefault(WRITE, [0, 0]))  # type: ignore[attr-defined]
    writer.os = shadow  # type: ignore[attr-defined]

    def dump() -> None:
        while True:
            time.sleep(1.0)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(totals))
            tmp.replace(out)

    threading.Thread(target=dump, name="insitu-timing", daemon=True).start()


def read(files: list[Path]) -> dict[str, tuple[int, float]]:
    """Calls and mean µs per call of each timed thing, pooled over the processes' files."""
    pooled: dict[str, list[int]] = {}
    for f in files:
        for what, (calls, ns) in json.loads(f.read_text()).items():
            acc = pooled.setdefault(what, [0, 0])
            acc[0] += calls
            acc[1] += ns
    return {what: (c, ns / c / 1e3 if c else 0.0) for what, (c, ns) in pooled.items()}
