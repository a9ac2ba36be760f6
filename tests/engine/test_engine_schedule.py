"""School hours in the district's wall-clock time: boundaries, closed and special days, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socialguard.engine.schedule import Period, Schedule, parse_days, parse_period

DENVER = ZoneInfo("America/Denver")


def _weekly(**days: list[str]) -> tuple[tuple[Period, ...], ...]:
    out: list[tuple[Period, ...]] = [() for _ in range(7)]
    for key, periods in days.items():
        for d in parse_days(key.replace("_", "-")):
            out[d] = tuple(parse_period(p) for p in periods)
    return tuple(out)


def _closed(first: date, last: date) -> frozenset[date]:
    return frozenset(first + timedelta(days=i) for i in range((last - first).days + 1))


SCHOOL = Schedule.create(
    "school-hours",
    DENVER,
    _weekly(mon_thu=["07:30-16:00"], fri=["07:30-13:00"]),
    frozenset({date(2026, 11, 26)}) | _closed(date(2026, 12, 21), date(2027, 1, 1)),
    {date(2026, 12, 18): (parse_period("07:30-12:00"),)},
)
NIGHT = Schedule.create("night", DENVER, _weekly(daily=["22:00-06:00"]))


def local(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=DENVER).replace(fold=fold)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        (local(2026, 12, 1, 7, 29, 59), False),
        (local(2026, 12, 1, 7, 30), True),  # start inclusive
        (local(2026, 12, 1, 15, 59, 59), True),
        (local(2026, 12, 1, 16, 0), False),  # end exclusive
        (local(2026, 12, 4, 12, 59), True),  # Friday
        (local(2026, 12, 4, 13, 0), False),
        (local(2026, 12, 5, 10, 0), False),  # Saturday
        (local(2026, 11, 26, 10, 0), False),  # closed day
        (local(2026, 11, 25, 10, 0), True),
        (local(2026, 12, 21, 10, 0), False),  # first day of the closed range
        (local(2027, 1, 1, 10, 0), False),  # last day of the closed range (inclusive)
        (local(2027, 1, 4, 10, 0), True),  # the Monday after
        (local(2026, 12, 18, 11, 59), True),  # early release
        (local(2026, 12, 18, 12, 0), False),
    ],
)
def test_school_hours(when: datetime, is_open: bool) -> None:
    assert SCHOOL.is_open(when) is is_open


def test_the_same_instant_in_utc_gives_the_same_answer() -> None:
    when = local(2026, 12, 1, 10, 0)
    assert SCHOOL.is_open(when.astimezone(UTC)) is True


@pytest.mark.parametrize(
    ("monday", "before", "after"),
    [
        (date(2026, 3, 9), date(2026, 3, 2), "2026 spring forward"),
        (date(2027, 3, 15), date(2027, 3, 8), "2027 spring forward"),
        (date(2026, 11, 2), date(2026, 10, 26), "2026 fall back"),
        (date(2027, 11, 8), date(2027, 11, 1), "2027 fall back"),
    ],
)
def test_opening_follows_the_wall_clock_across_dst(monday: date, before: date, after: str) -> None:
    """07:30 stays 07:30 local: its UTC instant moves by an hour across the change."""
    open_utc = local(monday.year, monday.month, monday.day, 7, 30).astimezone(UTC)
    other_utc = local(before.year, before.month, before.day, 7, 30).astimezone(UTC)
    assert open_utc.time() != other_utc.time(), after
    assert SCHOOL.is_open(open_utc)
    assert not SCHOOL.is_open(open_utc - timedelta(seconds=1))
    same_clock_other_week = datetime.combine(before, open_utc.time(), UTC)
    assert SCHOOL.is_open(same_clock_other_week) is (same_clock_other_week >= other_utc)


def test_a_period_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    assert NIGHT.is_open(local(2026, 12, 1, 23, 0))
    assert NIGHT.is_open(local(2026, 12, 2, 5, 59))
    assert not NIGHT.is_open(local(2026, 12, 2, 6, 0))
    assert not NIGHT.is_open(local(2026, 12, 2, 21, 59))


def test_an_overnight_period_on_the_fall_back_night_covers_both_one_thirties() -> None:
    assert NIGHT.is_open(local(2026, 11, 1, 1, 30, fold=0))
    assert NIGHT.is_open(local(2026, 11, 1, 1, 30, fold=1))
    assert not NIGHT.is_open(local(2026, 11, 1, 6, 0))


def test_a_closed_day_does_not_cut_short_the_previous_nights_period() -> None:
    night = Schedule.create(
        "n", DENVER, _weekly(daily=["22:00-06:00"]), frozenset({date(2026, 12, 2)})
    )
    assert night.is_open(local(2026, 12, 2, 5, 0))  # Tuesday night's period, into closed Wednesday
    assert not night.is_open(local(2026, 12, 2, 23, 0))


def test_next_change_is_the_end_of_the_period() -> None:
    assert SCHOOL.next_change(local(2026, 12, 1, 10, 0)) == local(2026, 12, 1, 16, 0)


def test_next_change_skips_the_weekend_and_the_dst_change() -> None:
    friday = local(2027, 3, 12, 14, 0)  # MST; Monday 15th is MDT
    change = SCHOOL.next_change(friday)
    assert change == local(2027, 3, 15, 7, 30)
    assert change is not None and change.astimezone(UTC).hour == 13


def test_next_change_skips_a_closed_range() -> None:
    assert SCHOOL.next_change(local(2026, 12, 18, 12, 0)) == local(2027, 1, 4, 7, 30)


def test_next_change_of_a_period_starting_in_the_skipped_hour_is_the_jump() -> None:
    sunday = Schedule.create("s", DENVER, _weekly(sun=["02:30-04:00"]))
    change = sunday.next_change(local(2026, 3, 8, 1, 0))
    assert change == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # 02:00 MST becomes 03:00 MDT
    assert sunday.is_open(change)
    assert not sunday.is_open(change - timedelta(seconds=1))


def test_next_change_is_none_for_a_schedule_that_never_changes() -> None:
    always = Schedule.create("always", DENVER, _weekly(daily=["00:00-24:00"]))
    assert always.is_open(local(2026, 12, 1, 3, 0))
    assert always.next_change(local(2026, 12, 1, 3, 0)) is None


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("07:30-16:00", 27000, 57600),
        ("22:00-06:00", 79200, 21600),
        ("00:00-24:00", 0, 0),
        ("22:00-24:00", 79200, 86400),
    ],
)
def test_parse_period(text: str, start: int, end: int) -> None:
    assert parse_period(text) == Period(start, end)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("7.30-16:00", "HH:MM"),
        ("07:30", "HH:MM-HH:MM"),
        ("07:30-25:00", "not a time"),
        ("08:00-08:00", "empty"),
    ],
)
def test_parse_period_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_period(text)


@pytest.mark.parametrize(
    ("key", "days"),
    [
        ("mon-thu", [0, 1, 2, 3]),
        ("fri", [4]),
        ("sat,sun", [5, 6]),
        ("weekdays", [0, 1, 2, 3, 4]),
        ("Monday", [0]),
    ],
)
def test_parse_days(key: str, days: list[int]) -> None:
    assert parse_days(key) == days


@pytest.mark.parametrize(("key", "why"), [("fri-mon", "backwards"), ("mun", "unknown day")])
def test_parse_days_refuses(key: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_days(key)


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)))
def test_the_per_minute_cache_agrees_with_the_wall_clock_rule(naive_utc: datetime) -> None:
    when = naive_utc.replace(tzinfo=UTC)
    for schedule in (SCHOOL, NIGHT):
        assert schedule.is_open(when) is schedule.is_open_local(when.astimezone(DENVER))
        assert schedule.is_open(when) is schedule.is_open_local(when.astimezone(DENVER))


@given(
    st.lists(
        st.tuples(
            st.datetimes(
                min_value=datetime(2026, 12, 1, 14, 29), max_value=datetime(2026, 12, 1, 23, 1)
            ),
            st.sampled_from([UTC, DENVER]),
        ),
        min_size=2,
        max_size=40,
    )
)
def test_the_last_minute_window_never_answers_for_another_minute(
    times: list[tuple[datetime, object]],
) -> None:
    """One schedule asked about times in any order and zone (the proxy's clock, `check --at`)
    answers as a fresh one would: the remembered window holds only its own UTC minute."""
    schedule = Schedule.create(
        "school-hours", DENVER, _weekly(mon_thu=["07:30-16:00"], fri=["07:30-13:00"])
    )
    for naive_utc, zone in times:
        when = naive_utc.replace(tzinfo=UTC).astimezone(zone)  # type: ignore[arg-type]
        fresh = Schedule.create("fresh", DENVER, schedule.weekly)
        assert schedule.is_open(when) is fresh.is_open(when)


def test_the_window_turns_over_at_the_boundary_second_by_second() -> None:
    schedule = Schedule.create("s", DENVER, _weekly(mon_thu=["07:30-16:00"]))
    start = local(2026, 12, 1, 7, 29, 58).astimezone(UTC)
    answers = [schedule.is_open(start + timedelta(seconds=i)) for i in range(5)]
    assert answers == [False, False, True, True, True]
    assert schedule.is_open(start) is False  # back in time: the window is not reused
