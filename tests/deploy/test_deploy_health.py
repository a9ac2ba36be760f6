"""The ready-made /healthz checks, against a real SQLite store and a real directory."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from socialguard.deploy.health import log_writable, policy_loaded, store_reachable
from socialguard.deploy.metrics import run_checks
from socialguard.overrides import open_store


def test_policy_loaded_follows_the_current_policy() -> None:
    current: list[object | None] = [None]
    check = policy_loaded(lambda: current[0])
    assert not check()
    current[0] = object()
    assert check()


def test_store_reachable_from_another_thread(tmp_path: Path) -> None:
    store = open_store(tmp_path / "socialguard.db")
    try:
        results: list[tuple[bool, dict[str, str]]] = []
        t = threading.Thread(
            target=lambda: results.append(run_checks({"store": store_reachable(store)}))
        )
        t.start()
        t.join(timeout=30)
        assert results == [(True, {"store": "ok"})]
    finally:
        store.close()


def test_store_unreachable_is_reported_with_its_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = open_store(state / "socialguard.db")
    try:
        shutil.rmtree(state)  # the disk under the store went away
        results: list[tuple[bool, dict[str, str]]] = []
        check = {"store": store_reachable(store)}
        t = threading.Thread(target=lambda: results.append(run_checks(check)))
        t.start()
        t.join(timeout=30)
        ((healthy, by_name),) = results
        assert not healthy
        assert by_name["store"].startswith("error: StoreError:")
        assert "deleted or moved while in use" in by_name["store"]
    finally:
        store.close()


def test_log_writable(tmp_path: Path) -> None:
    assert log_writable(tmp_path)()
    assert not log_writable(tmp_path / "missing")()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_read_only_log_directory_is_unhealthy(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        assert not log_writable(tmp_path)()
    finally:
        tmp_path.chmod(0o700)


def test_log_directory_without_room_is_unhealthy(tmp_path: Path) -> None:
    assert not log_writable(tmp_path, min_free_bytes=2**62)()
