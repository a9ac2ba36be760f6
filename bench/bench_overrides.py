"""Overrides figures: what 10,000 active grants cost decide(), how long a snapshot takes to rebuild,
how fast a change reaches a running refresher, and what a store write costs.

Budgets (issue 4): the snapshot lookup adds <= 1 us to decide() with 10,000 active grants; a change
made from the CLI reaches the proxy's snapshot within 2 s. Every figure is printed beside its
baseline
with the ratio. Bounded: fixed iteration counts; a temporary SQLite file; no network. Figures on a
shared 2-core machine are noisy (other engineers' test runs compete for the CPU).

    .venv/bin/python bench/bench_overrides.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from socialguard.engine import Grant, Overrides, Request, decide, resolve_principal
from socialguard.engine.model import Emergency
from socialguard.overrides import Actor, SnapshotRefresher, open_store
from socialguard.policy import load_policy

POLICY = """\
district: {name: Bench District, timezone: America/Denver}
groups:
  staff: {networks: [10.20.0.0/16]}
  admins: {networks: [10.10.5.0/24]}
categories:
  social: {domains: [facebook.com, instagram.com, tiktok.com]}
rules:
  - id: staff-social
    description: no social networking
    who: [staff]
    what: {categories: [social]}
    action: block
    bypass: [grant, emergency]
default: allow
"""
GRANTS = 10_000
QUICK = "--quick" in sys.argv
ROUNDS = 10 if QUICK else 40
CALLS = 2_000 if QUICK else 5_000
NOW = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
ADMIN = Actor(by="bench", source="bench")


def per_call_us(*fns: Callable[[], object]) -> list[float]:
    """Per-call CPU time of each fn, in microseconds: the best of ROUNDS batches of CALLS, the fns
    interleaved batch by batch so that a busy spell on the machine hits them alike. CPU time (not
    wall time) so that time spent descheduled by other processes is not counted."""
    best = [float("inf")] * len(fns)
    for _ in range(ROUNDS):
        for i, fn in enumerate(fns):
            start = time.process_time()
            for _ in range(CALLS):
                fn()
            best[i] = min(best[i], (time.process_time() - start) / CALLS * 1e6)
    return best


def row(name: str, measured: float, baseline: float, unit: str, baseline_name: str) -> None:
    ratio = measured / baseline if baseline else float("inf")
    print(
        f"{name:<46} {measured:>10.3f} {unit:<3} | {baseline_name:<30} {baseline:>10.3f} {unit:<3}"
        f" | ratio {ratio:6.2f}"
    )


def many_grants(n: int) -> list[Grant]:
    """n grants in force for other people (users, devices, addresses, a group), on social sites."""
    out = []
    for i in range(n):
        who = (f"user:u{i}", f"device:d{i}", f"ip:10.20.{i // 250}.{i % 250}", "group:admins")[
            i % 4
        ]
        out.append(
            Grant(
                f"g-{i}",
                who,
                ("facebook.com", "category:social")[: 1 + i % 2],
                NOW - timedelta(hours=1),
                NOW + timedelta(hours=1),
                "bench",
                "bench",
            )
        )
    return out


def bench_decide(workdir: Path) -> None:
    rules = workdir / "policy.yaml"
    rules.write_text(POLICY, encoding="utf-8")
    policy = load_policy(rules)
    jdoe = resolve_principal(policy, "10.20.200.5", user="jdoe")
    req = Request(host="www.facebook.com")
    grants = many_grants(GRANTS)
    emergencies = [
        Emergency(
            f"e-{i}",
            f"device:x{i}",
            NOW - timedelta(minutes=5),
            NOW + timedelta(minutes=25),
            "bench",
            "bench",
            ("facebook.com",),
            True,
        )
        for i in range(100)
    ]
    loaded = Overrides.build(grants, emergencies)
    assert decide(policy, req, jdoe, NOW, loaded).basis == "rule"  # the lookup runs, finds nothing
    holder = resolve_principal(policy, "10.20.200.5", user="u4")  # holds g-4
    assert decide(policy, req, holder, NOW, loaded).basis == "grant"
    empty, full, granted = per_call_us(
        lambda: decide(policy, req, jdoe, NOW, Overrides.EMPTY),
        lambda: decide(policy, req, jdoe, NOW, loaded),
        lambda: decide(policy, req, holder, NOW, loaded),
    )
    row(
        f"decide(), {GRANTS:,} grants + 100 emergencies (no match)",
        full,
        empty,
        "us",
        "decide(), no overrides",
    )
    print(f"{'  -> snapshot lookup adds':<46} {full - empty:>10.3f} us   (budget <= 1 us)")
    row("decide(), principal holds one of them", granted, empty, "us", "decide(), no overrides")


def bench_store(workdir: Path) -> None:
    store = open_store(workdir / "state" / "socialguard.db")
    n_writes = 200 if QUICK else 500
    start = time.perf_counter()
    for i in range(n_writes):
        now = datetime.now(UTC)
        store.add_grant(
            f"user:w{i}", ("facebook.com",), now, now + timedelta(hours=2), "bench", ADMIN
        )
    write_ms = (time.perf_counter() - start) / n_writes * 1e3
    import sqlite3

    raw = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    raw.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT)")
    start = time.perf_counter()
    for i in range(n_writes):
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", "x" * 200))
        raw.execute("COMMIT")
    raw_ms = (time.perf_counter() - start) / n_writes * 1e3
    raw.close()
    row("store: add a grant (+ event + counter)", write_ms, raw_ms, "ms", "one bare SQLite insert")

    big = open_store(workdir / "big" / "socialguard.db")
    now = datetime.now(UTC)
    for g in many_grants(GRANTS):
        big.add_grant(
            g.who, g.sites, now - timedelta(minutes=1), now + timedelta(hours=2), g.reason, ADMIN
        )
    small = open_store(workdir / "small" / "socialguard.db")

    def rebuild_ms(s: object) -> float:
        samples = []
        for _ in range(3 if QUICK else 5):
            start = time.perf_counter()
            a = s.active(datetime.now(UTC))  # type: ignore[attr-defined]
            Overrides.build(a.grants, a.emergencies)
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    row(
        f"snapshot rebuild, {GRANTS:,} grants",
        rebuild_ms(big),
        rebuild_ms(small),
        "ms",
        "snapshot rebuild, empty store",
    )

    trials = 8 if QUICK else 20
    delays = []
    with SnapshotRefresher(big, interval_s=0.5) as refresher:
        for i in range(trials):
            now = datetime.now(UTC)
            g = big.add_grant(
                f"user:pickup{i}", ("facebook.com",), now, now + timedelta(hours=1), "bench", ADMIN
            )
            start = time.perf_counter()
            for _ in range(2_000):  # bounded: at most ~20 s
                if refresher.current.grants.get(g.who):
                    break
                time.sleep(0.01)
            delays.append(time.perf_counter() - start)
    row(
        f"change -> running snapshot, median of {trials}",
        statistics.median(delays),
        2.0,
        "s",
        "budget (issue 4)",
    )
    row(f"change -> running snapshot, max of {trials}", max(delays), 2.0, "s", "budget (issue 4)")
    for s in (store, big, small):
        s.close()


def main() -> int:
    print("socialguard overrides benchmark (2-core shared machine: figures are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        bench_decide(Path(tmp))
        bench_store(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
