"""The overrides store under faults: held locks, a replaced, deleted, truncated, zero-length,
foreign or corrupt database file, a read-only state directory.

What users rely on: a read never waits for a writer; the proxy and the CLI never use two different
files (split brain); nothing recorded is silently replaced by a fresh empty store; and every refusal
says what is wrong.
"""

from __future__ import annotations

import os
import shutil
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
    assert res.returncode == 2
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
