"""Several writers at once (CLI processes and store clients) while the proxy's refresher polls and a
node drains the outbox: nothing lost, nothing doubled, and no "database is locked" reaches
anyone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

from socialguard.overrides import SnapshotRefresher, open_store
from socialguard.overrides.sqlite import SqliteStore

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from socialguard.overrides import Actor, open_store
    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(path)
    actor = Actor(by=name, source="test")
    for i in range(count):
        now = datetime.now(UTC)
        g = store.add_grant(f"user:{name}-{i}", ("facebook.com",), now, now + timedelta(hours=1),
                            "load", actor)
        if i % 5 == 0:
            store.revoke_grant(g.id, "churn", actor)
    store.close()
    """
)
POLICY = """\
district: {name: D, timezone: America/Denver}
groups: {staff: {networks: [10.20.0.0/16]}}
categories: {social: {domains: [facebook.com]}}
rules: []
default: allow
"""
WRITERS = 4
PER_WRITER = 15
CLI_WRITERS = 2


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "socialguard.db"
    rules = tmp_path / "policy.yaml"
    rules.write_text(POLICY, encoding="utf-8")
    store = open_store(db)
    assert isinstance(store, SqliteStore)
    refresher = SnapshotRefresher(store, interval_s=0.01).start()
    claimed: list[int] = []
    stop = threading.Event()

    def drain() -> None:
        while not stop.wait(0.002):
            claimed.extend(e["details"]["store_seq"] for e in store.claim_admin_events("node-a", 5))

    drainer = threading.Thread(target=drain)
    drainer.start()
    env = {**os.environ, "SOCIALGUARD_STATE": str(db.parent), "SOCIALGUARD_RULES": str(rules)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), f"w{n}", str(PER_WRITER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(WRITERS)
    ] + [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "socialguard",
                "grant",
                "add",
                "--who",
                f"user:cli{n}",
                "--site",
                "facebook.com",
                "--for",
                "1h",
                "--reason",
                "cli",
                "--by",
                f"cli{n}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(CLI_WRITERS)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    stop.set()
    drainer.join(timeout=60)
    refresher.stop()
    try:
        for p, (out, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err
            assert "locked" not in err.lower() and "locked" not in out.lower()
        grants = store.list_grants(datetime.now(UTC), include_all=True)
        expected = WRITERS * PER_WRITER + CLI_WRITERS
        assert len(grants) == expected
        revoked = sum(1 for g in grants if g.revoked_at is not None)
        assert revoked == WRITERS * len(range(0, PER_WRITER, 5))
        # every change made exactly one event, each handed out once
        claimed.extend(
            e["details"]["store_seq"] for e in store.claim_admin_events("node-a", 10_000)
        )
        assert sorted(claimed) == list(range(1, expected + revoked + 1))
        # the refresher's final view holds every grant still in force
        assert refresher.refresh_now()
        assert refresher.current.grant_count == expected - revoked
        assert refresher.failures == 0
        assert store.change_counter() == expected + revoked
    finally:
        store.close()
