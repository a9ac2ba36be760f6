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


def timed(fn, path: Path) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "million.txt"
        make_list(path)
        result = read_domain_list(path)
        ours = timed(read_domain_list, path)
        base = timed(baseline, path)
    kept, bad = len(result.domains), len(result.invalid)
    print(f"list: {result.lines:,} lines, {kept:,} kept, {bad} invalid")
    print(f"read_domain_list   median {ours:6.2f} s   (budget: well under 2 s)")
    print(f"baseline (split+dedup)   {base:6.2f} s")
    print(f"ratio                    {ours / base:6.2f}x")
    verdict = "within" if ours < 2.0 else "OVER (check the machine's load before believing it)"
    print(f"budget 2 s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
