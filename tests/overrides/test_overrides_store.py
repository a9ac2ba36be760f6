"""The SQLite store: migrations, every change with its admin event, the change counter, the
outbox."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from socialguard.errors import StoreError
from socialguard.overrides import (
    Actor,
    LimitReachedError,
    NotFoundError,
    StateError,
    open_store,
)
from socialguard.overrides.sqlite import MIGRATIONS, SqliteStore

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
ADMIN = Actor(by="principal.smith", source="gateway:/dev/pts/1")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SqliteStore:
    s = open_store(tmp_path / "state" / "socialguard.db", clock=clock)
    assert isinstance(s, SqliteStore)
    yield s
    s.close()


def test_a_new_store_records_its_migrations_and_uses_wal(store: SqliteStore) -> None:
    assert store.migrations() == [m.name for m in MIGRATIONS]
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reopening_does_not_reapply_migrations(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "s.db"
    a = open_store(path, clock=clock)
    a.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    a.close()
    b = open_store(path, clock=clock)
    assert len(b.list_grants(T0)) == 1
    assert b.migrations() == [m.name for m in MIGRATIONS]  # type: ignore[attr-defined]
    b.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "s.db"
    open_store(path, clock=clock).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"newer socialguard.*9999_future"):
        open_store(path, clock=clock)


def test_postgresql_location_is_reserved_not_silently_a_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="PostgreSQL store is not implemented"):
        open_store("postgresql://sg:secret@db.example/sg")


def test_every_write_bumps_the_change_counter(store: SqliteStore) -> None:
    counters = [store.change_counter()]
    g = store.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    counters.append(store.change_counter())
    store.revoke_grant(g.id, "done", ADMIN)
    counters.append(store.change_counter())
    store.start_emergency("all", None, "lockdown", ADMIN)
    counters.append(store.change_counter())
    store.stop_emergencies(None, "over", ADMIN)
    counters.append(store.change_counter())
    assert counters == sorted(set(counters)) and len(counters) == 5


def test_reads_do_not_bump_the_change_counter(store: SqliteStore) -> None:
    before = store.change_counter()
    store.list_grants(T0, include_all=True)
    store.active(T0)
    store.pending_reviews()
    assert store.change_counter() == before


def test_active_holds_grants_in_force_and_drops_revoked_and_ended(
    store: SqliteStore, clock: FakeClock
) -> None:
    keep = store.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=2), "r", ADMIN)
    ended = store.add_grant("user:b", ("x.example",), T0, T0 + timedelta(minutes=5), "r", ADMIN)
    revoked = store.add_grant("user:c", ("x.example",), T0, T0 + timedelta(hours=2), "r", ADMIN)
    store.revoke_grant(revoked.id, "no longer needed", ADMIN)
    clock.advance(minutes=5)
    ids = {g.id for g in store.active(clock.now).grants}
    assert ids == {keep.id}
    assert ended.id not in ids


def test_grant_round_trips_exactly(store: SqliteStore) -> None:
    g = store.add_grant(
        "group:staff",
        ("facebook.com", "category:social"),
        T0,
        T0 + timedelta(hours=3),
        "Yearbook",
        ADMIN,
    )
    record = store.get_grant(g.id)
    assert record.grant == g
    assert record.source == ADMIN.source
    assert record.status(T0) == "active"


def test_revoking_twice_is_refused(store: SqliteStore) -> None:
    g = store.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    store.revoke_grant(g.id, "first", ADMIN)
    with pytest.raises(StateError, match="already revoked"):
        store.revoke_grant(g.id, "second", ADMIN)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_grant("g-nope"),
        lambda s: s.revoke_grant("g-nope", "r", ADMIN),
        lambda s: s.get_emergency("e-nope"),
        lambda s: s.ack_emergency("e-nope", None, ADMIN),
        lambda s: s.get_request("r-nope"),
        lambda s: s.deny_request("r-nope", "r", ADMIN),
        lambda s: s.stop_emergencies(["e-nope"], "r", ADMIN),
    ],
)
def test_unknown_ids_are_not_found(store: SqliteStore, call) -> None:  # type: ignore[no-untyped-def]
    before = store.change_counter()
    with pytest.raises(NotFoundError, match="nope"):
        call(store)
    assert store.change_counter() == before


def test_each_change_appends_one_admin_event_with_who_where_what_why(store: SqliteStore) -> None:
    g = store.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "yearbook", ADMIN)
    store.revoke_grant(g.id, "finished", ADMIN)
    e = store.start_emergency("group:staff", T0 + timedelta(hours=1), "lockdown", ADMIN)
    store.stop_emergencies([e.id], "all clear", ADMIN)
    events = store.admin_events()
    assert [(ev.action, ev.target, ev.reason) for ev in events] == [
        ("grant_added", g.id, "yearbook"),
        ("grant_revoked", g.id, "finished"),
        ("emergency_started", e.id, "lockdown"),
        ("emergency_stopped", e.id, "all clear"),
    ]
    assert {(ev.by, ev.source) for ev in events} == {(ADMIN.by, ADMIN.source)}
    assert events[0].details["who"] == "user:a"


def test_a_failed_change_writes_no_event(store: SqliteStore) -> None:
    g = store.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    store.revoke_grant(g.id, "r", ADMIN)
    with pytest.raises(StateError):
        store.revoke_grant(g.id, "again", ADMIN)
    assert [ev.action for ev in store.admin_events()] == ["grant_added", "grant_revoked"]


def test_claim_hands_each_event_to_exactly_one_node(store: SqliteStore) -> None:
    for i in range(60):
        store.add_grant(f"user:u{i}", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def drain(node: str) -> None:
        for _ in range(200):  # bounded
            batch = store.claim_admin_events(node, 7)
            if not batch:
                return
            got[node].extend(ev["details"]["store_seq"] for ev in batch)

    threads = [threading.Thread(target=drain, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    seqs = [s for v in got.values() for s in v]
    assert sorted(seqs) == list(range(1, 61))  # all, none twice
    assert store.claim_admin_events("a", 10) == []


def test_claimed_events_carry_the_audit_admin_event_arguments(store: SqliteStore) -> None:
    store.start_emergency("all", None, "lockdown", ADMIN)
    (ev,) = store.claim_admin_events("node-1", 10)
    assert set(ev) == {"action", "by", "source", "target", "reason", "details"}
    assert ev["action"] == "emergency_started" and ev["by"] == ADMIN.by


def test_emergency_until_stopped_and_stop_all(store: SqliteStore, clock: FakeClock) -> None:
    a = store.start_emergency("all", None, "lockdown", ADMIN)
    b = store.start_emergency("group:staff", None, "drill", ADMIN)
    assert {e.id for e in store.active(clock.now).emergencies} == {a.id, b.id}
    clock.advance(minutes=10)
    stopped = store.stop_emergencies(None, "all clear", ADMIN)
    assert {r.emergency.id for r in stopped} == {a.id, b.id}
    assert all(r.emergency.ends == clock.now for r in stopped)
    assert store.active(clock.now).emergencies == ()
    with pytest.raises(StateError, match="no administrator-declared emergency"):
        store.stop_emergencies(None, "again", ADMIN)


def test_stopping_an_ended_emergency_is_refused(store: SqliteStore, clock: FakeClock) -> None:
    e = store.start_emergency("all", clock.now + timedelta(minutes=1), "short", ADMIN)
    clock.advance(minutes=2)
    with pytest.raises(StateError, match="already ended"):
        store.stop_emergencies([e.id], "late", ADMIN)


def _self(store: SqliteStore, clock: FakeClock, person: str = "user:jdoe", per_day: int = 2):  # type: ignore[no-untyped-def]
    day_start = clock.now.replace(hour=7, minute=0, second=0, microsecond=0)  # 00:00 in Denver
    return store.declare_self_emergency(
        scope="device:laptop-17",
        person=person,
        site="facebook.com",
        url="https://www.facebook.com/",
        reason="Child's school posted a lockdown notice",
        actor=Actor(by=person, source="10.20.1.5"),
        minutes=30,
        per_day=per_day,
        day_start=day_start,
    )


def test_self_declared_emergency_lasts_the_policy_minutes_for_that_site(
    store: SqliteStore, clock: FakeClock
) -> None:
    r = _self(store, clock)
    e = r.emergency
    assert e.self_declared and e.scope == "device:laptop-17" and e.sites == ("facebook.com",)
    assert e.ends - e.starts == timedelta(minutes=30)
    assert [x.emergency.id for x in store.pending_reviews()] == [e.id]


def test_self_declared_emergencies_are_limited_per_person_per_day(
    store: SqliteStore, clock: FakeClock
) -> None:
    _self(store, clock)
    _self(store, clock)
    with pytest.raises(LimitReachedError, match="2 of 2"):
        _self(store, clock)
    _self(store, clock, person="user:other")  # someone else is not affected
    clock.advance(days=1)
    _self(store, clock)  # a new day
    assert len(store.pending_reviews()) == 4


def test_the_limit_holds_under_concurrent_submissions(store: SqliteStore, clock: FakeClock) -> None:
    results: list[str] = []

    def submit() -> None:
        try:
            _self(store, clock, per_day=3)
            results.append("ok")
        except LimitReachedError:
            results.append("limit")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["limit"] * 5 + ["ok"] * 3


def test_ack_marks_reviewed_once(store: SqliteStore, clock: FakeClock) -> None:
    r = _self(store, clock)
    acked = store.ack_emergency(r.emergency.id, "genuine", ADMIN)
    assert acked.acked_by == ADMIN.by and acked.ack_note == "genuine"
    assert store.pending_reviews() == []
    with pytest.raises(StateError, match="already acknowledged"):
        store.ack_emergency(r.emergency.id, None, ADMIN)


def test_admin_emergencies_are_not_for_review(store: SqliteStore) -> None:
    e = store.start_emergency("all", None, "lockdown", ADMIN)
    with pytest.raises(StateError, match="declared by an administrator"):
        store.ack_emergency(e.id, None, ADMIN)


def _request(store: SqliteStore):  # type: ignore[no-untyped-def]
    return store.file_request(
        who="user:jdoe",
        site="facebook.com",
        url="https://www.facebook.com/groups/pta",
        rule_id="staff-social-school-hours",
        decision_id="d-123",
        reason="PTA page update",
        client_ip="10.20.1.5",
        actor=Actor(by="user:jdoe", source="10.20.1.5"),
    )


def test_approving_a_request_grants_that_person_that_site(store: SqliteStore) -> None:
    req = _request(store)
    assert [r.id for r in store.list_requests()] == [req.id]
    answered, grant = store.approve_request(req.id, T0 + timedelta(hours=1), ADMIN)
    assert answered.status == "approved" and answered.grant_id == grant.id
    assert (grant.who, grant.sites, grant.request_id) == ("user:jdoe", ("facebook.com",), req.id)
    assert store.list_requests() == []
    assert [g.id for g in store.active(T0).grants] == [grant.id]
    actions = [ev.action for ev in store.admin_events()]
    assert actions == ["access_requested", "grant_added", "access_approved"]


def test_a_request_is_answered_once(store: SqliteStore) -> None:
    req = _request(store)
    denied = store.deny_request(req.id, "not for individual use", ADMIN)
    assert denied.status == "denied" and denied.decision_note == "not for individual use"
    with pytest.raises(StateError, match="already denied"):
        store.approve_request(req.id, T0 + timedelta(hours=1), ADMIN)
    assert store.active(T0).grants == ()


def test_next_boundary_is_the_nearest_start_or_end(store: SqliteStore) -> None:
    store.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=2), "r", ADMIN)
    store.add_grant(
        "user:b", ("x.example",), T0 + timedelta(minutes=30), T0 + timedelta(hours=3), "r", ADMIN
    )
    store.start_emergency("all", T0 + timedelta(hours=1), "e", ADMIN)
    assert store.active(T0).next_boundary == T0 + timedelta(minutes=30)
    assert store.active(T0 + timedelta(minutes=30)).next_boundary == T0 + timedelta(hours=1)


def test_an_older_store_is_migrated_forward_keeping_its_data(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "s.db"
    old = open_store(path, clock=clock)
    g = old.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    old.close()
    conn = sqlite3.connect(path)  # wind the file back to the first schema version
    conn.executescript(
        "DROP TABLE form_secret; DROP TABLE used_form_tokens;"
        "DROP TABLE outbox_deliveries; DROP TABLE outbox;"
        "DROP INDEX admin_events_unconfirmed; ALTER TABLE admin_events DROP COLUMN event_id;"
        "ALTER TABLE admin_events DROP COLUMN confirmed_at;"
        "DELETE FROM schema_migrations WHERE name != '0001_initial';"
    )
    conn.close()
    again = open_store(path, clock=clock)
    assert again.migrations() == [m.name for m in MIGRATIONS]  # type: ignore[attr-defined]
    assert again.get_grant(g.id).grant == g
    assert len(again.form_secret()) == 32
    again.close()


def test_events_claimed_before_the_confirmation_migration_count_as_delivered(
    tmp_path: Path, clock: FakeClock
) -> None:
    """They were delivered under the old rule; offering them again would repeat them in the log."""
    path = tmp_path / "s.db"
    old = open_store(path, clock=clock)
    old.add_grant("user:a", ("x.example",), T0, T0 + timedelta(hours=1), "r", ADMIN)
    assert len(old.claim_admin_events("n1", 10)) == 1
    old.close()
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP INDEX admin_events_unconfirmed; ALTER TABLE admin_events DROP COLUMN event_id;"
        "ALTER TABLE admin_events DROP COLUMN confirmed_at;"
        "DELETE FROM schema_migrations WHERE name = '0003_admin_events_confirmed';"
    )
    conn.close()
    again = open_store(path, clock=clock)
    assert again.unconfirmed_admin_events("n1") == []  # type: ignore[attr-defined]
    again.close()
