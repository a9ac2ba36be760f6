"""What the proxy benchmarks share: starting a role in its own process, and a process's CPU time.

Not a benchmark itself (`run_all.py` runs `bench_*.py` only).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Any


def start(target: Any, *args: Any, timeout: float = 120) -> tuple[mp.Process, Any]:
    """Run `target(*args, send)` in a daemon process; return it and the first thing it sends
    (its port, say), or stop the benchmark when it sends nothing within `timeout`."""
    recv, send = mp.Pipe(duplex=False)
    p = mp.Process(target=target, args=(*args, send), daemon=True)
    p.start()
    if not recv.poll(timeout):
        p.kill()
        raise SystemExit(f"{target.__name__} did not start within {timeout} s")
    return p, recv.recv()


def cpu_seconds(pid: int, *, main_only: bool = False) -> float:
    """CPU time of a process so far, summed over its threads (a proxy inspects bodies and writes
    its log on threads besides the event loop's); with `main_only`, its main thread's alone
    (mitmproxy's event loop: where the per-request work is done).

    From the scheduler's nanosecond counters (/proc/PID/task/TID/schedstat): the 10 ms ticks of
    /proc/PID/stat are as large as the differences measured. A thread that ends between listing
    and reading is skipped (the proxies' threads live as long as they do). Where the kernel has
    no schedstat, the ticks are what there is.
    """
    tasks = Path(f"/proc/{pid}/task")
    if not Path(tasks, str(pid), "schedstat").exists():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total = 0
    for task in [Path(tasks, str(pid))] if main_only else tasks.iterdir():
        try:
            total += int(Path(task, "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9
