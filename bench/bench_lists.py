"""How long reading a 1,000,000-line domain list takes, beside the least any reader must do.

Baseline: read the file, split it into lines and de-duplicate them in file order (dict.fromkeys),
with no validation or normalisation at all. The list is built from UT1's all-categories file
(real names nobody here wrote) when present, else synthesised. Figures on a shared 2-core
machine are noisy: the median of a few runs is printed.
"""

from __future__ import annotations

import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

from socialguard.policy.lists import read_domain_list

LINES = 1_000_000
RUNS = 3
UT1_ALL = Path(__file__).resolve().parents[2] / "shared/data/ut1/all-categories.domains.gz"


def make_list(path: Path) -> None:
    """A million plausible names: UT1's real ones, then prefixed copies of them."""
    if UT1_ALL.exists():
        with gzip.open(UT1_ALL, "rt", encoding="utf-8") as f:
            seed = [n for n in f.read().split() if not n.replace(".", "").isdigit()]
    else:
        seed = [f"site{i}.example{i % 500}.com" for i in range(100_000)]
    out: list[str] = []
    round_ = 0
    while len(out) < LINES:
        prefix = "" if round_ == 0 else f"w{round_}."
        out.extend(prefix + n for n in seed[: LINES - len(out)])
        round_ += 1
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def baseline(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return len(dict.fromkeys(f.read().split("\n")))


def timed(fn, path: Path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall-clock and CPU seconds; CPU time suffers less from other loads on the box."""
    wall, cpu = [], []
    for _ in range(RUNS):
        w, c = time.perf_counter(), time.process_time()
        fn(path)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million.txt"
        make_list(path)
        result = read_domain_list(path)
        ours, ours_cpu = timed(read_domain_list, path)
        base, base_cpu = timed(baseline, path)
    kept, bad = len(result.domains), len(result.invalid)
    print(f"list: {result.lines:,} lines, {kept:,} kept, {bad} invalid; median of {RUNS} runs")
    print(f"{'':26} {'wall':>8} {'cpu':>8}")
    print(f"{'read_domain_list':26} {ours:7.2f}s {ours_cpu:7.2f}s   (budget: well under 2 s)")
    print(f"{'baseline (split+dedup)':26} {base:7.2f}s {base_cpu:7.2f}s")
    print(f"{'ratio':26} {ours / base:7.2f}x {ours_cpu / base_cpu:7.2f}x")
    verdict = "within" if ours_cpu < 2.0 else "OVER"
    print(f"budget 2 s (cpu): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
