"""The snapshot refresher: picks up changes, honours starts and ends to the second, survives
failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from socialguard.engine import Overrides, Principal
from socialguard.errors import StoreError
from socialguard.overrides import Actor, SnapshotRefresher, open_store
from socialguard.overrides.sqlite import SqliteStore

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
ADMIN = Actor(by="admin", source="test")
JDOE = Principal(client_ip="10.20.1.5", user="jdoe", groups=frozenset({"staff"}))


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    s = open_store(tmp_path / "socialguard.db", clock=clock)
    assert isinstance(s, SqliteStore)
    yield s
    s.close()


def _granted(snapshot: Overrides, now: datetime, host: str = "www.facebook.com") -> bool:
    return snapshot.grant_for(JDOE, host, {}, now) is not None


def test_starts_with_what_is_in_the_store(store: SqliteStore, clock: FakeClock) -> None:
    store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    r = SnapshotRefresher(store, clock=clock)
    assert isinstance(r.current, Overrides)
    assert _granted(r.current, T0)


def test_a_change_is_picked_up_on_the_next_poll(store: SqliteStore, clock: FakeClock) -> None:
    r = SnapshotRefresher(store, clock=clock)
    assert not r.refresh_if_needed()  # nothing changed: no rebuild
    g = store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    assert r.refresh_if_needed()
    assert _granted(r.current, T0)
    store.revoke_grant(g.id, "r", ADMIN)
    assert r.refresh_if_needed()
    assert not _granted(r.current, T0)


def test_expiry_is_honoured_to_the_second(store: SqliteStore, clock: FakeClock) -> None:
    ends = T0 + timedelta(minutes=45)
    store.add_grant("user:jdoe", ("facebook.com",), T0, ends, "r", ADMIN)
    r = SnapshotRefresher(store, clock=clock)
    assert r.next_boundary == ends
    clock.now = ends - timedelta(seconds=1)
    assert not r.refresh_if_needed()
    assert _granted(r.current, clock.now)  # one second before the end: still granted
    clock.now = ends
    assert not _granted(r.current, clock.now)  # the snapshot checks `now` itself (end exclusive)
    assert r.refresh_if_needed()  # and the boundary triggers a rebuild that drops it
    assert r.current.grant_count == 0
    assert r.next_boundary is None


def test_a_scheduled_grant_starts_to_the_second(store: SqliteStore, clock: FakeClock) -> None:
    starts = T0 + timedelta(minutes=10)
    store.add_grant("user:jdoe", ("facebook.com",), starts, starts + timedelta(hours=1), "r", ADMIN)
    r = SnapshotRefresher(store, clock=clock)
    clock.now = starts - timedelta(seconds=1)
    assert not _granted(r.current, clock.now)
    clock.now = starts
    assert r.refresh_if_needed()
    assert _granted(r.current, clock.now)


def test_emergency_end_is_a_boundary_too(store: SqliteStore, clock: FakeClock) -> None:
    ends = T0 + timedelta(minutes=30)
    store.start_emergency("all", ends, "lockdown", ADMIN)
    r = SnapshotRefresher(store, clock=clock)
    assert r.current.emergency_for(JDOE, "www.facebook.com", {}, T0) is not None
    clock.now = ends
    assert r.refresh_if_needed()
    assert r.current.emergency_count == 0


class BrokenStore:
    """A store whose reads fail after the first, like a disk gone read-only mid-run."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.broken = False

    def change_counter(self) -> int:
        if self.broken:
            raise StoreError("disk I/O error")
        return self.inner.change_counter()

    def active(self, now: datetime):  # type: ignore[no-untyped-def]
        if self.broken:
            raise StoreError("disk I/O error")
        return self.inner.active(now)


def test_a_failing_store_keeps_the_last_snapshot(store: SqliteStore, clock: FakeClock) -> None:
    store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    broken = BrokenStore(store)
    r = SnapshotRefresher(broken, clock=clock)  # type: ignore[arg-type]
    before = r.current
    broken.broken = True
    assert not r.refresh_if_needed()
    assert not r.refresh_now()
    assert r.current is before and r.failures == 2


def test_no_store_at_start_means_no_overrides_not_none(
    store: SqliteStore, clock: FakeClock
) -> None:
    broken = BrokenStore(store)
    broken.broken = True
    r = SnapshotRefresher(broken, clock=clock)  # type: ignore[arg-type]
    assert isinstance(r.current, Overrides) and not r.current


def test_the_background_thread_picks_up_a_change(store: SqliteStore) -> None:
    """Live pickup with the real clock: the thread rebuilds without anyone calling it."""
    with SnapshotRefresher(store, interval_s=0.05) as r:
        now = datetime.now(UTC)
        store.add_grant("user:jdoe", ("facebook.com",), now, now + timedelta(hours=1), "r", ADMIN)
        deadline = time.monotonic() + 30  # bounded; the pickup figure itself is in bench/
        while not _granted(r.current, datetime.now(UTC)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _granted(r.current, datetime.now(UTC))
    assert r._thread is None  # stopped on exit


def test_nothing_in_force_is_the_engines_empty_snapshot(
    store: SqliteStore, clock: FakeClock
) -> None:
    """decide() skips every override lookup for Overrides.EMPTY (by identity)."""
    r = SnapshotRefresher(store, clock=clock)
    assert r.current is Overrides.EMPTY
    g = store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    r.refresh_if_needed()
    assert r.current is not Overrides.EMPTY
    store.revoke_grant(g.id, "r", ADMIN)
    r.refresh_if_needed()
    assert r.current is Overrides.EMPTY


def test_a_moved_change_counter_is_announced_once(store: SqliteStore, clock: FakeClock) -> None:
    """The proxy's admin-event pump drains the outbox when told: every store write moves the
    counter, so one announcement per change and none without one."""
    r = SnapshotRefresher(store, clock=clock)
    calls: list[int] = []
    r.on_change = lambda: calls.append(store.change_counter())
    assert not r.refresh_if_needed() and calls == []
    store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    assert r.refresh_if_needed()
    assert calls == [store.change_counter()]
    assert not r.refresh_if_needed() and len(calls) == 1


def test_a_failing_listener_does_not_stop_the_refresh(store: SqliteStore, clock: FakeClock) -> None:
    r = SnapshotRefresher(store, clock=clock)

    def broken() -> None:
        raise RuntimeError("listener bug")

    r.on_change = broken
    store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    assert r.refresh_if_needed()
    assert _granted(r.current, T0)


def test_a_rebuild_asked_for_by_the_writer_itself_still_tells_the_listener(
    store: SqliteStore, clock: FakeClock
) -> None:
    """The block page's emergency form writes the store and calls `refresh_now` at once; the
    admin-event pump listening on `on_change` must hear of that change too (else the self-declared
    emergency reaches the decision log only at the pump's next interval)."""
    r = SnapshotRefresher(store, clock=clock)
    heard: list[int] = []
    r.on_change = lambda: heard.append(1)
    store.add_grant("user:jdoe", ("facebook.com",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    assert r.refresh_now()
    assert heard == [1]
    assert not r.refresh_if_needed()  # the next poll sees nothing new, and says nothing again
    assert heard == [1]


def test_a_store_failing_every_poll_is_logged_once_then_its_recovery(
    store: SqliteStore, clock: FakeClock
) -> None:
    import structlog.testing

    broken = BrokenStore(store)
    r = SnapshotRefresher(broken, clock=clock)  # type: ignore[arg-type]
    broken.broken = True
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            r.refresh_if_needed()
        broken.broken = False
        r.refresh_if_needed()
    events = [e["event"] for e in logs]
    assert events.count("overrides_poll_failed") == 1
    assert "overrides_poll_recovered" in events
    assert r.failures == 5
