"""The proxy's lock-step cost at other revisions beside this checkout's, in one run (`make bench`
does not run it; run it by hand to judge a change).

Each revision is checked out into a temporary git worktree, and its socialguard runs in proxy
processes of its own (spawned with that tree's `src` first on its path). Two bare mitmproxy
variants, this checkout's socialguard and each revision's then take turns request by request, as
in `bench_proxy.py`'s lock-step figure: allowed plain HTTP, keep-alive, one request in flight.
Every variant is compared with the mean of the two bare ones. Figures from separate runs on this VM
differ by more than most changes do (the CPU speed drifts by tens of percent within minutes, and
with it what the addon adds per request), so a change is judged against its parent in the same
run, never against an earlier run's numbers.

Each variant runs as `--copies` processes (default 8), its cost the mean of theirs: two processes
of the very same code differ by up to 2 % (about 90 µs) for the life of the process (where their
memory landed), more than most changes being judged. With 4 processes a variant the two baselines
still came out 25-30 µs apart, and a change that removed ten Python calls from every request read
8 µs worse than its parent; with 10 processes the baselines were 12 µs apart and the same change
read 24 µs better. A run with 8 takes about six minutes.

With `--tls` the work is the passthrough figure's instead: new TLS connections through CONNECT,
passed through on the SNI decision, against two mitmproxies that pass every connection through.

With `--in-situ` the proxies take the saturated figure's load instead (`--windows` turns of half
a second each), and socialguard's processes time their own request hooks and decision records
in place (`insitu.py`): the mean CPU µs per call of each, beside each variant's requests per
CPU-second against the baselines. Under load a hook costs several times what it does in a warm
loop, and these timers resolve a microsecond where the lock-step difference resolves thirty.

Usage: `python bench/compare_revisions.py REV [REV ...] [--tls | --in-situ] [--copies 8]
[--chunks 20] [--chunk-requests 60] [--windows 12]`, e.g. `python bench/compare_revisions.py
HEAD~3`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import insitu
from bench_proxy import (
    REPO,
    LockStepCosts,
    Saturated,
    _cost_ratio,
    _lock_step,
    _processes,
    _saturated,
    _TlsLockStep,
    prepare,
    start_proxies,
)


def _worktree(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(into), rev],
        check=True,
    )
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("revs", nargs="+", help="git revisions to compare with this checkout")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--chunk-requests", type=int, default=60, help="requests per proxy a chunk")
    ap.add_argument(
        "--copies", type=int, default=8, help="proxy processes per variant, their costs averaged"
    )
    ap.add_argument("--domains", type=int, default=1000)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--tls", action="store_true", help="new passed-through TLS connections")
    mode.add_argument(
        "--in-situ", action="store_true", help="saturated load, socialguard's code timed in place"
    )
    ap.add_argument("--windows", type=int, default=12, help="with --in-situ: turns per process")
    args = ap.parse_args()
    if args.chunks < 2:
        ap.error("--chunks must be at least 2: the spread needs two samples")
    if args.windows < 1:
        ap.error("--windows must be at least 1")
    baseline = "passall" if args.tls else "bare"
    work = Path(tempfile.mkdtemp(prefix="bench-revisions-"))
    trees: list[Path] = []
    procs: list[Any] = []
    try:
        rules, ports = prepare(work, args.domains, procs)
        variants = [
            ("bare", baseline, ""),
            ("bare2", baseline, ""),
            ("this checkout", "addon", ""),
        ]
        for i, rev in enumerate(args.revs):
            trees.append(_worktree(rev, work / f"tree{i}"))
            variants.append((rev, "addon", str(trees[-1])))
        proxies = start_proxies(
            work, ports, rules, procs, args.copies, variants, timed=args.in_situ
        )
        names = tuple(name for name, _, _ in variants)
        if args.in_situ:
            run = _saturated(proxies, names, "http", args.windows, 0.5)
            time.sleep(1.5)  # the timers' last sums reach their files
            _report_in_situ(run, names, work, args.copies)
            return 0
        if args.tls:  # a connection costs several requests' worth: fewer to a chunk
            steps = _lock_step(
                proxies, names, args.chunks, args.chunk_requests // 4, client=_TlsLockStep
            )
        else:
            steps = _lock_step(proxies, names, args.chunks, args.chunk_requests)
        work_done = "new TLS connections, passed through" if args.tls else "allowed plain HTTP"
        _report(steps, names, work_done, args.copies)
        return 0
    finally:
        for p in procs:
            p.kill()
            p.join(10)
        for tree in trees:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
            )
        shutil.rmtree(work, ignore_errors=True)


def _report(costs: LockStepCosts, variants: tuple[str, ...], work: str, copies: int) -> None:
    """Per variant: the main thread's CPU per operation (what each request costs; compared with
    the baseline), the whole process's, and what its other threads used by the second."""
    main, total = costs.main, costs.total
    base = [(a + b) / 2 for a, b in zip(main["bare"], main["bare2"], strict=True)]
    base_mean = statistics.fmean(base)
    print(f"lock-step, {work}; each variant the mean of {copies} proxy processes; bare, bare2: "
          "two baseline variants (their difference is the method's noise floor)")  # fmt: skip
    print(f"{'variant':28} {'main us/op':>10} {'added':>7} {'all threads':>11} {'others ms/s':>11}"
          "  main thread: operations per CPU-s vs the mean of the two baselines")  # fmt: skip
    for name in variants:
        mean = statistics.fmean(main[name])
        others = costs.background_ms_per_s(name)
        whole = statistics.fmean(total[name])
        print(f"{name:28} {mean:10.1f} {mean - base_mean:7.1f} {whole:11.1f} {others:11.2f}  "
              f"{_cost_ratio(main[name], base)}")  # fmt: skip


def _report_in_situ(run: Saturated, variants: tuple[str, ...], work: Path, copies: int) -> None:
    """Per variant: requests per CPU-second of its own windows against the baselines' mean, and
    for socialguard's variants the CPU µs per call of each timed thing, pooled over processes."""
    base = (run.per_cpu_second("bare") + run.per_cpu_second("bare2")) / 2
    print(
        f"saturated, allowed plain HTTP; each variant {copies} proxy processes; socialguard's "
        "timed in place (a timer adds about 1 µs to what it times, and to the request)"
    )
    print(f"{'variant':28} {'req/CPU-s':>9} {'ratio':>7}")
    for name in variants:
        rate = run.per_cpu_second(name)
        print(f"{name:28} {rate:9.1f} {rate / base:7.1%}")
    timed = [n for n in variants if n not in {"bare", "bare2"}]
    times = {
        n: insitu.read([work / f"run-{p}" / insitu.FILE for p in _processes(run.cpu, (n,))])
        for n in timed
    }
    whats = [w for w, *_ in insitu.TIMED] + [insitu.WRITE]
    print(f"\n{'CPU µs per call, in place':28}" + "".join(f" {n[:14]:>14}" for n in timed))
    for what in whats:
        cells = [times[n].get(what) for n in timed]
        if any(cells):
            print(f"{what:28}" + "".join(f" {c[1]:14.1f}" if c else f" {'-':>14}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
