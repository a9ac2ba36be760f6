"""The overrides store under faults: held locks, a replaced, deleted, truncated, zero-length,
foreign or corrupt database file, a read-only state directory.

What users rely on: a read never waits for a writer; the proxy and the CLI never use two different
files (split brain); nothing recorded is silently replaced by a fresh empty store; and every refusal
says what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from socialguard import paths
from socialguard.errors import StoreError
from socialguard.overrides import Actor, open_store

harness = sys.modules["socialguard_proxy_harness"]
SCHOOL_HOURS = harness.SCHOOL_HOURS
ADMIN = Actor(by="principal", source="test")


def _sg(*args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _grant(db: Path, who: str = "ip:127.0.0.1") -> str:
    store = open_store(db)
    try:
        return store.add_grant(
            who, ("facebook.com",), SCHOOL_HOURS - timedelta(hours=1),
            SCHOOL_HOURS + timedelta(hours=1), "district page", ADMIN,
        ).id  # fmt: skip
    finally:
        store.close()


def _wait(pred: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


# -- opening: what a file is, and what is wrong with it -------------------------------------------


def test_read_does_not_wait_for_a_held_write_lock(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _grant(paths.store_path(state))
    holder = sqlite3.connect(paths.store_path(state), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE meta SET value = value + 1 WHERE key = 'change_counter'")
    try:
        res = _sg("grant", "list", "--state", str(state), "--all", "--json")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.returncode == 0, res.stderr
    assert "district page" in res.stdout


def test_zero_length_file_is_an_error_not_a_fresh_store(tmp_path: Path) -> None:
    db = tmp_path / "socialguard.db"
    db.write_bytes(b"")
    with pytest.raises(StoreError, match="zero-length"):
        open_store(db)
    assert db.stat().st_size == 0, "nothing written over it"


def test_foreign_file_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "socialguard.db"
    db.write_text("grants: none\n")
    with pytest.raises(StoreError, match="not an SQLite database"):
        open_store(db)
    assert db.read_text() == "grants: none\n"


def test_another_programs_database_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "socialguard.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a socialguard overrides store"):
        open_store(db)


def test_truncated_database_is_reported_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "socialguard.db"
    for i in range(30):
        _grant(db, f"user:u{i}")
    store = open_store(db)
    store.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    res = _sg("grant", "list", "--state", str(tmp_path), "--all")
    assert res.returncode != 0
    assert "corrupt" in res.stderr or "truncated" in res.stderr, res.stderr


def test_cli_says_the_state_directory_is_read_only(tmp_path: Path, ro_dir: Path) -> None:
    res = _sg("grant", "list", "--state", str(ro_dir))
    assert res.returncode == 4  # the system refused, not bad input
    assert "read-only" in res.stderr, res.stderr


@pytest.fixture
def ro_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system (a tmpfs mounted ro): root ignores file modes, not mount flags."""
    where = tmp_path / "ro"
    where.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


# -- the running proxy: the file replaced or deleted under it -------------------------------------


@pytest.mark.e2e
def test_replaced_database_is_reopened_and_its_grant_honoured(start_proxy: Any) -> None:
    proxy = start_proxy()
    db = paths.store_path(proxy.log_dir.parent / "state")
    assert harness.curl(proxy, "http://www.facebook.com/").status == 403
    # Build a whole new store elsewhere and move it over the old one (a restore from backup).
    other = proxy.log_dir.parent / "restored" / "socialguard.db"
    grant_id = _grant(other)
    for suffix in ("-wal", "-shm"):
        Path(str(other) + suffix).unlink(missing_ok=True)
    os.replace(other, db)
    assert _wait(lambda: harness.curl(proxy, "http://www.facebook.com/").status == 200)
    allowed = [r for r in proxy.records() if r.get("basis") == "grant"]
    assert allowed and allowed[-1]["override_id"] == grant_id
    assert _wait(lambda: any(r.get("type") == "admin" for r in proxy.records()))


@pytest.mark.e2e
def test_deleted_database_is_reported_and_a_new_one_is_used_not_split(start_proxy: Any) -> None:
    proxy = start_proxy()
    state = proxy.log_dir.parent / "state"
    db = paths.store_path(state)
    with structlog.testing.capture_logs() as logs:
        shutil.move(db, state / "moved-away.db")
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        assert _wait(lambda: any(e["event"] == "store_missing" for e in logs))
    assert harness.curl(proxy, "http://www.facebook.com/").status == 403  # last good state
    grant_id = _grant(db)  # the CLI creates a new store: the proxy must use that one
    assert _wait(lambda: harness.curl(proxy, "http://www.facebook.com/").status == 200)
    allowed = [r for r in proxy.records() if r.get("basis") == "grant"]
    assert allowed and allowed[-1]["override_id"] == grant_id
    assert _wait(
        lambda: any(
            r.get("type") == "admin" and r.get("target") == grant_id for r in proxy.records()
        )
    )


# -- a real `socialguard run` whose state directory fills up, then turns read-only -----------------

ALWAYS_BLOCKED = (
    harness.TEST_RULES[: harness.TEST_RULES.index("tests:")].replace(
        "rules:\n",
        "rules:\n  - id: never-facebook\n    description: Not on this network\n    who: [staff]\n"
        "    what:\n      domains: [facebook.com]\n    action: block\n",
    )
    + 'tests:\n  - {url: "https://www.facebook.com/", client: 127.0.0.1, at: "2026-12-01T20:00",'
    + " expect: block}\n"
)


def _fill(directory: Path) -> None:
    fd = os.open(directory / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while True:  # bounded by the file system's size
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.e2e
def test_full_then_read_only_state_directory_keeps_deciding_and_says_why(
    tmp_path: Path, tmpfs_state: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALWAYS_BLOCKED)
    log_dir = tmp_path / "log"
    err = tmp_path / "err.txt"
    with err.open("w") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
             "--certs", str(tmp_path / "certs"), "--state", str(tmpfs_state),
             "--log-dir", str(log_dir), "--listen", "127.0.0.1:0", "--node", "full"],
            stdout=subprocess.DEVNULL, stderr=errf, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
    try:
        port = 0
        for _ in range(600):  # bounded: a minute
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", err.read_text())
            if m:
                port = int(m.group(1))
                break
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        assert port, err.read_text()
        proxy = f"http://127.0.0.1:{port}"

        def facebook() -> str:
            res = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                 "--noproxy", "", "-x", proxy, "http://www.facebook.com/"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            return res.stdout

        assert facebook() == "403"
        _fill(tmpfs_state)
        add = _sg("grant", "add", "--state", str(tmpfs_state), "--rules", str(rules),
                  "--who", "user:jdoe", "--site", "facebook.com", "--for", "1h",
                  "--reason", "yearbook")  # fmt: skip
        assert add.returncode == 4, add.stderr
        assert "full" in add.stderr.lower() or "no space" in add.stderr.lower(), add.stderr
        assert facebook() == "403"
        listing = _sg("grant", "list", "--state", str(tmpfs_state))
        assert listing.returncode == 0, listing.stderr  # reading needs no space
        # The same directory through a read-only bind mount (the proxy holds its files open, so
        # the file system itself cannot be remounted read-only under it).
        ro = tmp_path / "ro-state"
        ro.mkdir()
        subprocess.run(["mount", "--bind", str(tmpfs_state), str(ro)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
            add = _sg("grant", "add", "--state", str(ro), "--rules", str(rules),
                  "--who", "user:jdoe", "--site", "facebook.com", "--for", "1h",
                      "--reason", "yearbook")  # fmt: skip
        finally:
            subprocess.run(["umount", str(ro)], check=False)
        assert add.returncode == 4, add.stderr
        assert "read-only" in add.stderr.lower(), add.stderr
        assert facebook() == "403"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [
        json.loads(line)
        for f in sorted(log_dir.glob("*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    blocks = [r for r in records if r.get("host") == "www.facebook.com"]
    assert [r["action"] for r in blocks] == ["block"] * 3, "every decision recorded"
    verify = _sg("audit", "verify", str(log_dir))
    # intact; exit 5 says no anchor was checked (no key given: the state, where checkpoints
    # would have gone, was full), not that anything is wrong
    assert (verify.returncode, "intact" in verify.stdout) == (5, True), verify.stdout


@pytest.fixture
def tmpfs_state(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "state"
    where.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- the running proxy: the database locked, truncated or corrupted under it ----------------------


def _proxy_with_grant(start_proxy: Any) -> tuple[Any, Path, str]:
    proxy = start_proxy()
    db = paths.store_path(proxy.log_dir.parent / "state")
    grant_id = _grant(db)
    assert _wait(lambda: harness.curl(proxy, "http://www.facebook.com/").status == 200)
    return proxy, db, grant_id


def _granted(proxy: Any, grant_id: str) -> int:
    return sum(1 for r in proxy.records() if r.get("override_id") == grant_id)


@pytest.mark.e2e
def test_locked_database_changes_nothing_for_traffic_or_readers(start_proxy: Any) -> None:
    proxy, db, grant_id = _proxy_with_grant(start_proxy)
    before = _granted(proxy, grant_id)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        statuses = [harness.curl(proxy, "http://www.facebook.com/").status for _ in range(3)]
        listing = _sg("grant", "list", "--state", str(db.parent), "--all")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert statuses == [200, 200, 200]
    assert _granted(proxy, grant_id) == before + 3
    assert listing.returncode == 0 and grant_id in listing.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_database_keeps_the_last_good_overrides_and_is_reported(
    start_proxy: Any, damage: str
) -> None:
    proxy, db, grant_id = _proxy_with_grant(start_proxy)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    with db.open("r+b") as f:  # in place: same file, as a failing disk or a bad copy leaves it
        if damage == "truncate":
            f.truncate(size // 2)
        else:
            f.seek(100)
            f.write(b"\xa5" * (size - 100))
    before = _granted(proxy, grant_id)
    statuses = [harness.curl(proxy, "http://www.facebook.com/").status for _ in range(3)]
    assert statuses == [200, 200, 200], "decided on the last good grants and emergencies"
    assert _granted(proxy, grant_id) == before + 3, "every decision recorded"
    listing = _sg("grant", "list", "--state", str(db.parent), "--all")
    assert listing.returncode == 2
    assert "corrupt" in listing.stderr, listing.stderr


def test_a_foreign_file_moved_over_the_store_is_refused_until_a_real_one_is_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "socialguard.db"
    _grant(db)
    store = open_store(db)
    try:
        assert store.change_counter() == 1
        db.rename(tmp_path / "kept.db")
        db.write_text("not a store\n")
        with pytest.raises(StoreError, match="not an SQLite database"):
            store.change_counter()
        with pytest.raises(StoreError, match="not an SQLite database"):
            store.change_counter()  # still refused, not taken on the second look
        os.replace(tmp_path / "kept.db", db)
        assert store.change_counter() == 1
        assert len(store.list_grants(SCHOOL_HOURS)) == 1
    finally:
        store.close()
