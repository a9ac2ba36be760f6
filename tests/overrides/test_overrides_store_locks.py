"""One process, one store file, several `SqliteStore`s on it, and `socialguard grant` running in
other processes: the proxy must keep seeing every change and every change it makes must reach
the file the CLI reads (issue 19: never split brain on the store).

POSIX drops all of a process's fcntl locks on a file as soon as the process closes *any*
descriptor of that file ("How To Corrupt An SQLite Database File", 2.2). In WAL mode a connection
holds a SHARED lock on the database for its whole life; a CLI process that finds none when it
closes takes the database as its own, checkpoints and deletes the `-wal` and `-shm` the proxy
still uses. So no code in the proxy's process may open and close the database file beside
SQLite (a header check with `open()` did, on every `open_store`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from socialguard.errors import StoreError
from socialguard.overrides import Actor, SnapshotRefresher, handles, open_store
from socialguard.overrides.sqlite import SqliteStore

POLICY = """\
district: {name: D, timezone: America/Denver}
groups: {staff: {networks: [10.20.0.0/16]}}
categories: {social: {domains: [facebook.com]}}
rules: []
default: allow
"""
CLI_GRANTS = 3


@pytest.fixture
def state(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    return tmp_path / "state"


def _cli(state: Path, *args: str) -> str:
    """`socialguard ...` as a real process of its own (its own locks, its own close)."""
    env = {
        **os.environ,
        "SOCIALGUARD_STATE": str(state),
        "SOCIALGUARD_RULES": str(state.parent / "policy.yaml"),
        "SUDO_USER": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def _cli_grant(state: Path, who: str) -> None:
    _cli(state, "grant", "add", "--who", who, "--site", "facebook.com", "--for", "1h",
         "--reason", "yearbook")  # fmt: skip


@pytest.fixture
def proxy_store(state: Path) -> Iterator[SqliteStore]:
    """The proxy's store, in use (connected and read), as the refresher keeps it."""
    store = open_store(state / "socialguard.db")
    assert isinstance(store, SqliteStore)
    store.change_counter()
    yield store
    store.close()


def _who(store: SqliteStore) -> set[str]:
    return {r.grant.who for r in store.list_grants(datetime.now(UTC))}


def test_a_second_store_on_the_file_keeps_the_proxy_seeing_cli_grants(
    state: Path, proxy_store: SqliteStore
) -> None:
    refresher = SnapshotRefresher(proxy_store)  # not started: polled by hand, no waiting
    second = open_store(state / "socialguard.db")  # the addon reopening the same state
    try:
        for n in range(CLI_GRANTS):
            _cli_grant(state, f"user:cli{n}")
            assert refresher.refresh_if_needed(), f"the proxy missed CLI grant {n}"
        assert _who(proxy_store) == {f"user:cli{n}" for n in range(CLI_GRANTS)}
        assert (state / "socialguard.db-wal").exists()  # the CLI never took the WAL away
    finally:
        second.close()  # type: ignore[attr-defined]


def test_a_grant_the_proxy_writes_after_a_second_open_reaches_the_cli(
    state: Path, proxy_store: SqliteStore
) -> None:
    second = open_store(state / "socialguard.db")
    second.close()  # type: ignore[attr-defined]  # an addon swapping stores closes the old one
    _cli_grant(state, "user:cli-before")
    now = datetime.now(UTC)
    mine = proxy_store.add_grant(
        "user:proxy", ("facebook.com",), now, now + timedelta(hours=1), "form",
        Actor(by="proxy", source="test"),
    )  # fmt: skip
    _cli_grant(state, "user:cli-after")
    listed = {g["id"] for g in json.loads(_cli(state, "grant", "list", "--json"))}
    assert mine.id in listed, "a grant the proxy recorded was lost to every other process"
    assert _who(proxy_store) == {"user:cli-before", "user:proxy", "user:cli-after"}


def test_stores_share_one_descriptor_closed_after_the_last(state: Path) -> None:
    first = open_store(state / "socialguard.db")
    st = os.stat(state / "socialguard.db")
    key = (st.st_dev, st.st_ino)
    second = open_store(state / "socialguard.db")
    assert handles.held()[key] == 2  # one descriptor, two users: no open/close beside SQLite
    second.close()  # type: ignore[attr-defined]
    assert handles.held()[key] == 1
    first.close()  # type: ignore[attr-defined]
    assert key not in handles.held()


def test_a_foreign_file_polled_again_and_again_holds_nothing_more(state: Path) -> None:
    store = open_store(state / "socialguard.db")
    try:
        foreign = state / "foreign.db"
        foreign.write_bytes(b"not a database " * 20)
        foreign.replace(state / "socialguard.db")
        for _ in range(5):
            with pytest.raises(StoreError, match="not an SQLite database"):
                store.change_counter()
        st = os.stat(state / "socialguard.db")
        assert (st.st_dev, st.st_ino) not in handles.held()
    finally:
        store.close()  # type: ignore[attr-defined]
