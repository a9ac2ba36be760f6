"""The proxy's lock-step cost at other revisions beside this checkout's, in one run (`make bench`
does not run it; run it by hand to judge a change).

Each revision is checked out into a temporary git worktree, and its socialguard runs in a proxy
process of its own (spawned with that tree's `src` first on its path). Two bare mitmproxies, this
checkout's socialguard and each revision's then take turns request by request, as in
`bench_proxy.py`'s lock-step figure: allowed plain HTTP, keep-alive, one request in flight. Every
proxy is compared with the mean of the two bare copies. Figures from separate runs on this VM
differ by more than most changes do (the CPU speed drifts by tens of percent within minutes, and
with it what the addon adds per request), so a change is judged against its parent in the same
run, never against an earlier run's numbers.

Usage: `python bench/compare_revisions.py REV [REV ...] [--chunks 30] [--chunk-requests 200]`,
e.g. `python bench/compare_revisions.py HEAD~3`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_proxy import REPO, _cost_ratio, _lock_step, _proxy, prepare


def _proxy_from(  # noqa: PLR0917 - a process target: positional by nature
    tree: str, variant: str, ready: Any, ports: Any, work: str, rules: str
) -> None:
    """A proxy process whose socialguard is imported from `tree` (empty: this checkout)."""
    if tree:
        sys.path.insert(0, str(Path(tree) / "src"))
    _proxy(variant, ready, ports, work, rules)


def _worktree(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(into), rev],
        check=True,
    )
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("revs", nargs="+", help="git revisions to compare with this checkout")
    ap.add_argument("--chunks", type=int, default=30)
    ap.add_argument("--chunk-requests", type=int, default=200)
    ap.add_argument("--domains", type=int, default=1000)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    work = Path(tempfile.mkdtemp(prefix="bench-revisions-"))
    trees: list[Path] = []
    procs: list[Any] = []
    try:
        rules, ports = prepare(work, args.domains, procs)
        variants = [("bare", "bare", ""), ("bare2", "bare", ""), ("this checkout", "addon", "")]
        for i, rev in enumerate(args.revs):
            trees.append(_worktree(rev, work / f"tree{i}"))
            variants.append((rev, "addon", str(trees[-1])))
        proxies: dict[str, tuple[int, int]] = {}
        for name, variant, tree in variants:
            (work / f"run-{len(proxies)}").mkdir()
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_proxy_from,
                args=(tree, variant, send, ports, str(work / f"run-{len(proxies)}"), str(rules)),
                daemon=True,
            )
            p.start()
            procs.append(p)
            if not recv.poll(300):
                raise SystemExit(f"proxy {name} did not start")
            proxies[name] = (recv.recv(), p.pid)
        names = tuple(proxies)
        steps = _lock_step(proxies, names, args.chunks, args.chunk_requests)
        _report(steps)
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


def _report(steps: dict[str, list[float]]) -> None:
    base = [(a + b) / 2 for a, b in zip(steps["bare"], steps["bare2"], strict=True)]
    base_mean = statistics.fmean(base)
    print(f"{'variant (lock-step, allowed plain HTTP)':40} {'CPU us/req':>10} {'added':>8}  "
          "requests per CPU-s vs the mean of the two bare copies")  # fmt: skip
    for name, values in steps.items():
        mean = statistics.fmean(values)
        print(f"{name:40} {mean:10.1f} {mean - base_mean:8.1f}  {_cost_ratio(values, base)}")


if __name__ == "__main__":
    sys.exit(main())
