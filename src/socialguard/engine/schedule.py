"""School hours: weekly periods, closed days and special days, in the district's wall-clock time.

Hours are what the clocks on the school's walls say (`07:30-16:00`), so a schedule is evaluated on
local wall-clock time in the district's IANA zone, never on UTC offsets: 07:30 is 07:30 on both
sides of a DST change. A period includes its start and excludes its end (`07:30-16:00` is open at
07:30:00 and closed at 16:00:00). A period whose end is not after its start crosses midnight
(`22:00-06:00`) and belongs to the day it starts on: a closed Tuesday does not cut short Monday's
night period. A special day replaces that day's weekly hours (an empty list closes it); a closed
day has no hours; special days win over closed days, so an early-release day inside a closed range
can be declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

__all__ = ["DAY_NAMES", "Period", "Schedule", "parse_days", "parse_period"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY = 86400
_ONE_DAY = timedelta(days=1)
# How far ahead next_change looks before answering "never" (a schedule that stays as it is).
_HORIZON_DAYS = 400
_UTC = ZoneInfo("UTC")
_MINUTE_CACHE_MAX = 4096
_ONE_MINUTE = timedelta(minutes=1)
# A window no aware time falls in: the first is_open call fills the real one.
_EMPTY_WINDOW = (datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), False)


@dataclass(frozen=True, slots=True)
class Period:
    """Seconds after local midnight; `end <= start` means it runs past midnight into the
    next day."""

    start: int
    end: int

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{_fmt(self.start)}-{_fmt(self.end)}"


def _fmt(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_period(text: str) -> Period:
    """`"07:30-16:00"` → Period; `24:00` is allowed as an end. Raises ValueError with the reason."""
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise ValueError(f"period {text!r} must look like 'HH:MM-HH:MM'")
    start = _parse_clock(start_text.strip(), text, allow_24=False)
    end = _parse_clock(end_text.strip(), text, allow_24=True)
    if start == end:
        raise ValueError(f"period {text!r} is empty (start equals end)")
    if end == _DAY and start == 0:
        end = 0  # the whole day: an overnight period from midnight to midnight
    return Period(start, end)


def _parse_clock(text: str, period: str, *, allow_24: bool) -> int:
    hh, sep, mm = text.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2 or len(hh) > 2:
        raise ValueError(f"time {text!r} in period {period!r} must look like HH:MM")
    hours, minutes = int(hh), int(mm)
    if allow_24 and hours == 24 and minutes == 0:
        return _DAY
    if hours > 23 or minutes > 59:
        raise ValueError(f"time {text!r} in period {period!r} is not a time of day")
    return hours * 3600 + minutes * 60


def parse_days(key: str) -> list[int]:
    """`mon-thu` → [0, 1, 2, 3]; `sat,sun`, `fri`, `daily`, `weekdays`, `weekend` and full names
    too."""
    key = key.strip().lower()
    if key == "daily":
        return list(range(7))
    if key == "weekdays":
        return list(range(5))
    if key == "weekend":
        return [5, 6]
    out: list[int] = []
    for part in key.split(","):
        first, sep, last = part.strip().partition("-")
        a = _day_index(first, key)
        if not sep:
            out.append(a)
            continue
        b = _day_index(last, key)
        if b < a:
            raise ValueError(f"day range {part.strip()!r} runs backwards (write e.g. 'mon-fri')")
        out.extend(range(a, b + 1))
    return out


def _day_index(name: str, key: str) -> int:
    name = name.strip()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in _LONG_DAY_NAMES:
        return _LONG_DAY_NAMES.index(name)
    raise ValueError(f"unknown day {name!r} in {key!r} (use mon, tue, wed, thu, fri, sat, sun)")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named calendar of open periods in one time zone. `is_open(now)` is the hot-path
    question."""

    name: str
    zone: tzinfo
    weekly: tuple[tuple[Period, ...], ...]  # 7 entries, Monday first
    closed: frozenset[date] = frozenset()
    special: Mapping[date, tuple[Period, ...]] = field(default_factory=dict)
    has_overnight: bool = False
    # is_open by UTC minute: every boundary is a whole local minute and every zone offset a whole
    # number of minutes, so the answer cannot change inside a UTC minute. Bounded; a plain dict
    # is safe to share between threads (a racing writer stores the same answer).
    # Keyed by the float floor(timestamp / 60): no int() call on the hot path.
    _by_minute: dict[float, bool] = field(default_factory=dict, compare=False, repr=False)
    # The UTC minute last asked about, [start, end), and the answer in it: a proxy asks about
    # "now" for every request, so two datetime comparisons answer nearly every call, where
    # computing the minute (`timestamp()`) cost most of is_open. One slot, replaced whole, so
    # a racing thread sees an old or a new window, never a mix.
    _window: list[tuple[datetime, datetime, bool]] = field(
        default_factory=lambda: [_EMPTY_WINDOW], compare=False, repr=False
    )

    @classmethod
    def create(
        cls,
        name: str,
        zone: tzinfo,
        weekly: tuple[tuple[Period, ...], ...],
        closed: frozenset[date] = frozenset(),
        special: Mapping[date, tuple[Period, ...]] | None = None,
    ) -> Schedule:
        special = dict(special or {})
        overnight = any(p.overnight for day in weekly for p in day) or any(
            p.overnight for day in special.values() for p in day
        )
        return cls(name, zone, weekly, closed, special, overnight)

    def periods_on(self, day: date) -> tuple[Period, ...]:
        """The periods starting on `day`: its special hours, else none if closed, else the weekly
        ones."""
        special = self.special.get(day)
        if special is not None:
            return special
        if day in self.closed:
            return ()
        return self.weekly[day.weekday()]

    def is_open(self, now: datetime) -> bool:
        """Is `now` (timezone-aware) inside one of the schedule's periods, by local wall-clock
        time?"""
        start, end, state = self._window[0]
        if now.tzinfo is not None and start <= now < end:
            return state
        minute = now.timestamp() // 60
        cached = self._by_minute.get(minute)
        if cached is None:
            cached = self.is_open_local(now.astimezone(self.zone))
            if len(self._by_minute) >= _MINUTE_CACHE_MAX:
                self._by_minute.clear()
            self._by_minute[minute] = cached
        if now.tzinfo is not None:
            start = datetime.fromtimestamp(minute * 60, UTC)
            self._window[0] = (start, start + _ONE_MINUTE, cached)
        return cached

    def is_open_local(self, local: datetime) -> bool:
        """As is_open, for a datetime already converted to the schedule's zone."""
        day = local.date()
        second = local.hour * 3600 + local.minute * 60 + local.second
        for p in self.periods_on(day):
            if p.start <= second and (p.overnight or second < p.end):
                return True
        if self.has_overnight:
            for p in self.periods_on(day - _ONE_DAY):
                if p.overnight and second < p.end:
                    return True
        return False

    def next_change(self, now: datetime) -> datetime | None:
        """The first instant after `now` at which is_open changes, or None within ~13 months.

        The state can only change at a period boundary (on either side of a fall-back repeat) or
        at a DST jump (a boundary inside the skipped hour takes effect at the jump), so those are
        the candidates; each is checked with is_open itself, so the answer cannot disagree with it.
        """
        state = self.is_open(now)
        local_day = now.astimezone(self.zone).date()
        candidates: list[datetime] = []
        for offset in range(-1, _HORIZON_DAYS):
            day = local_day + timedelta(days=offset)
            candidates.extend(self._boundaries(day))
            candidates.extend(_offset_changes(day, self.zone))
            if offset % 7 == 6:
                found = _first_different(self, sorted(candidates), now, state)
                if found is not None:
                    return found
                candidates.clear()
        return _first_different(self, sorted(candidates), now, state)

    def _boundaries(self, day: date) -> list[datetime]:
        out: list[datetime] = []
        for p in self.periods_on(day):
            out.extend(_wall_instants(day, p.start, self.zone))
            end_day = day + _ONE_DAY if p.overnight or p.end == _DAY else day
            out.extend(_wall_instants(end_day, p.end % _DAY, self.zone))
        return out


def _wall_instants(day: date, second: int, zone: tzinfo) -> list[datetime]:
    """Both readings of a wall-clock time (they differ only in a fall-back repeat)."""
    t = time(second // 3600, second % 3600 // 60, second % 60)
    # In UTC: aware datetimes sharing a tzinfo compare by wall clock and ignore `fold`.
    return [datetime.combine(day, t, zone).replace(fold=fold).astimezone(_UTC) for fold in (0, 1)]


def _offset_changes(day: date, zone: tzinfo) -> list[datetime]:
    """The DST jump inside `day`, if any, found by bisection to the second."""
    lo = datetime.combine(day, time(0), zone).astimezone(_UTC)
    hi = lo + _ONE_DAY
    if lo.astimezone(zone).utcoffset() == hi.astimezone(zone).utcoffset():
        return []
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    whole = hi.replace(microsecond=0)  # zone transitions fall on whole seconds
    return [whole if whole.astimezone(zone).utcoffset() != before else whole + timedelta(seconds=1)]


def _first_different(
    schedule: Schedule, candidates: list[datetime], now: datetime, state: bool
) -> datetime | None:
    for c in candidates:
        if c > now and schedule.is_open(c) != state:
            return c
    return None
