"""Reading the decision log back: streaming records, filtered, from every node, in time order.

Records are read file by file (plain or gzip) and line by line, never all at once, so memory stays
flat whatever the log's size. Files wholly outside `--since/--until` are skipped unopened (a file
ends where the next one of its chain begins). Cheap byte tests run before a line is parsed, so a
search that matches little parses little. A file is skipped by time only on the range of times
it holds, which the next file's `file_open` states (`prev_ts_min`, `prev_ts_max`): a clock that
stepped back makes a later file hold earlier times, so its first time says nothing.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from socialguard.errors import AuditError

from . import files
from .chains import Chain, find_chains
from .schema import TYPE_FILE_CLOSE, TYPE_FILE_OPEN

WHO_KINDS = ("user", "device", "ip", "group")
BOOKKEEPING = frozenset({TYPE_FILE_OPEN, TYPE_FILE_CLOSE})
# What a decision record's outcome can be: a request's allow/block, a connection's verdict.
OUTCOMES = ("allow", "block", "pass", "inspect")
_VERDICTS = frozenset({"pass", "inspect"})


def outcome(record: dict[str, Any]) -> Any:
    """A decision's outcome: its `action`, but a connection's `verdict` (logs written before the
    connection record's action was its verdict said `block` for an inspected connection)."""
    if record.get("stage") == "connection" and record.get("verdict"):
        return record["verdict"]
    return record.get("action")


@dataclass(frozen=True, slots=True)
class Who:
    """A `--who` filter: user:NAME, device:ID, ip:ADDR (or CIDR), group:NAME."""

    kind: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Who:
        kind, sep, value = text.partition(":")
        if not sep or kind not in WHO_KINDS or not value:
            raise AuditError(
                f"--who {text!r}: expected user:NAME, device:ID, ip:ADDR[/BITS] or group:NAME"
            )
        if kind == "ip":
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as e:
                raise AuditError(f"--who {text!r}: not an IP address or network") from e
        return cls(kind, value)

    def matches(self, record: dict[str, Any]) -> bool:
        if self.kind == "user":
            return record.get("user") == self.value or self._user_in_admin_event(record)
        if self.kind == "device":
            return record.get("device") == self.value
        if self.kind == "group":
            return self.value in (record.get("groups") or ())
        client = record.get("client")
        if not isinstance(client, str):
            return False
        if "/" not in self.value:
            return client == self.value
        try:
            return ipaddress.ip_address(client) in ipaddress.ip_network(self.value, strict=False)
        except ValueError:
            return False

    def _user_in_admin_event(self, record: dict[str, Any]) -> bool:
        """An administrators' change by the person (an administrator's name, or `user:NAME` for
        what a person did on the block page) or for them (a grant's `who`, an emergency's
        `scope`, an access request's `who`)."""
        key = f"user:{self.value}"
        if record.get("by") in (self.value, key):
            return True
        details = record.get("details")
        return isinstance(details, dict) and key in (details.get("who"), details.get("scope"))

    def needle(self) -> bytes | None:
        """Bytes every matching line must contain (a pre-filter before parsing)."""
        if self.kind == "ip":
            return None if "/" in self.value else b'"client":' + _json_str(self.value)
        if self.kind == "device":
            return b'"device":' + _json_str(self.value)
        if self.kind == "user":  # also `user:NAME` in an admin event: the name without quotes
            return _json_str(self.value)[1:-1]
        return _json_str(self.value)  # group (in a list)


def _json_str(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Filter:
    """What to keep. Times are UTC ISO-8601 strings (compared as text, as the log writes them)."""

    since: str | None = None
    until: str | None = None
    who: Who | None = None
    host: str | None = None
    category: str | None = None
    action: str | None = None
    basis: str | None = None
    rule: str | None = None
    types: frozenset[str] | None = None  # None: every event, not the chain's file bookkeeping
    service: str | None = None  # a service id (engine/services.py), as records name it

    def needles(self) -> list[bytes]:
        out = []
        if self.who is not None and (n := self.who.needle()) is not None:
            out.append(n)
        if self.host:
            out.append(self.host.encode("utf-8"))
        if self.action:
            key = "verdict" if self.action in _VERDICTS else "action"
            out.append(f'"{key}":'.encode() + _json_str(self.action))
        for key, value in (
            ("category", self.category),
            ("basis", self.basis),
            ("rule", self.rule),
            ("service", self.service),
        ):
            if value:
                out.append(f'"{key}":'.encode() + _json_str(value))  # the writer's compact form
        return out

    def decided_by_bytes(self) -> bool:
        """Whether needles, the type test and the timestamp bytes decide a line without parsing it:
        every criterion is an exact `"key":value` of the writer's compact form."""
        exact_who = (
            self.who is None
            or self.who.kind == "device"
            or (self.who.kind == "ip" and "/" not in self.who.value)
        )
        return exact_who and not self.host and (self.types is None or len(self.types) == 1)

    def verdict_matters(self) -> bool:
        """Whether a line carrying a connection's `verdict` must be parsed to know its outcome
        (an allow/block filter on logs written before a connection's action was its verdict)."""
        return self.action in ("allow", "block")

    def type_test(self) -> tuple[bytes | None, tuple[bytes, ...]]:
        """(needle the type must match, needles it must not) in the writer's compact form."""
        if self.types is None:
            return None, tuple(b'"type":' + _json_str(t) for t in sorted(BOOKKEEPING))
        if len(self.types) == 1:
            return b'"type":' + _json_str(next(iter(self.types))), ()
        return None, ()

    def matches(self, r: dict[str, Any]) -> bool:
        kind = r.get("type")
        if kind in BOOKKEEPING if self.types is None else kind not in self.types:
            return False
        ts = r.get("ts", "")
        if self.since is not None and ts < self.since:
            return False
        if self.until is not None and ts >= self.until:
            return False
        if self.who is not None and not self.who.matches(r):
            return False
        if self.host and not (
            _host_in(r.get("host"), self.host) or _host_in(r.get("sni"), self.host)
        ):
            return False
        return (
            (self.category is None or r.get("category") == self.category)
            and (self.action is None or outcome(r) == self.action)
            and (self.basis is None or r.get("basis") == self.basis)
            and (self.rule is None or r.get("rule") == self.rule)
            and (self.service is None or r.get("service") == self.service)
        )


def _host_in(host: Any, domain: str) -> bool:
    """`host` is `domain` or one of its subdomains."""
    return isinstance(host, str) and (host == domain or host.endswith("." + domain))


def parse_when(text: str, tz: ZoneInfo, *, now: datetime, end: bool = False) -> str:
    """A --since/--until value as a UTC ISO string.

    Accepts a date (`2026-11-28`: its local midnight; as --until the day is included), a local date
    and time (`2026-11-28T08:00` or with a space), an ISO time with an offset or Z, `today`,
    `yesterday`, or a span back from now (`90m`, `24h`, `7d`).
    """
    t = text.strip()
    try:
        if t in ("today", "yesterday"):
            d = now.astimezone(tz).date() - timedelta(days=1 if t == "yesterday" else 0)
            return _local_day_start(d + timedelta(days=1 if end else 0), tz)
        if t[-1:] in ("m", "h", "d") and t[:-1].isdigit():
            unit = {"m": "minutes", "h": "hours", "d": "days"}[t[-1]]
            return _iso(now - timedelta(**{unit: int(t[:-1])}))
        if len(t) == 10:
            d = date.fromisoformat(t)
            return _local_day_start(d + timedelta(days=1 if end else 0), tz)
        dt = datetime.fromisoformat(t.replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError as e:
        raise AuditError(
            f"{text!r}: not a time (use 2026-11-28, 2026-11-28T08:00, today, 24h or 7d)"
        ) from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return _iso(dt)


def _local_day_start(d: date, tz: ZoneInfo) -> str:
    return _iso(datetime.combine(d, datetime.min.time(), tzinfo=tz))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def local_time(ts: str, tz: ZoneInfo) -> datetime:
    """A record's UTC timestamp in the district's zone."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(tz)


@dataclass(slots=True)
class Found:
    """A record read back: its raw line, where it is, and the parsed record (parsed on first use,
    so that a search whose filters the raw bytes decide, printed as JSON, parses nothing)."""

    raw: bytes
    path: Path
    lineno: int
    parsed: dict[str, Any] | None = None

    @property
    def record(self) -> dict[str, Any]:
        if self.parsed is None:
            self.parsed = json.loads(self.raw)
        return self.parsed

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"


_TS = b'"ts":"'
_VERDICT = b'"verdict":'


def _ts_of(raw: bytes) -> bytes | None:
    """The timestamp bytes near the start of a line as the writer lays it out, without parsing."""
    i = raw.find(_TS, 0, 64)
    return raw[i + 6 : i + 30] if i >= 0 else None


def _chain_records(chain: Chain, flt: Filter) -> Iterator[tuple[bytes, Found]]:
    needles = flt.needles()
    want_type, not_types = flt.type_test()
    if want_type is not None:
        needles.append(want_type)
    by_bytes = flt.decided_by_bytes()
    verdict_matters = flt.verdict_matters()
    more = needles[1:]  # needles[0] picks the candidate lines
    since = flt.since.encode() if flt.since else None
    until = flt.until.encode() if flt.until else None
    timed = since is not None or until is not None
    loads = json.loads
    for i, cf in enumerate(chain.files):
        if i + 1 < len(chain.files):  # closed: the next file's file_open says what times it held
            held = chain.files[i + 1].opening
            low, high = held.get("prev_ts_min"), held.get("prev_ts_max")
            if flt.since is not None and isinstance(high, str) and high < flt.since:
                continue
            if flt.until is not None and isinstance(low, str) and low >= flt.until:
                continue
        path = cf.file.path
        try:
            lines = (
                files.iter_lines_containing(path, needles[0]) if needles else files.iter_lines(path)
            )
            for lineno, raw in lines:
                if more and not _has_all(raw, more):
                    continue
                if not_types and _has_any(raw, not_types):
                    continue
                ts = _ts_of(raw)
                if ts is None:  # not the writer's layout: decide on the parsed record
                    try:
                        record = loads(raw)
                    except ValueError:
                        continue  # `audit verify` reports it; a search shows what it can read
                    if isinstance(record, dict) and flt.matches(record):
                        yield str(record.get("ts", "")).encode(), Found(raw, path, lineno, record)
                    continue
                if timed and ((since is not None and ts < since) or (until and ts >= until)):
                    continue
                if by_bytes and not (verdict_matters and _VERDICT in raw):
                    yield ts, Found(raw, path, lineno)
                    continue
                try:
                    record = loads(raw)  # no hash check here: that is `audit verify`'s job
                except ValueError:
                    continue
                if isinstance(record, dict) and flt.matches(record):
                    yield ts, Found(raw, path, lineno, record)
        except (OSError, EOFError, zlib.error) as e:
            raise AuditError(f"{path}: cannot read: {e}") from e


def _has_any(raw: bytes, needles: tuple[bytes, ...]) -> bool:
    for n in needles:  # noqa: SIM110 - a plain loop is faster than any(<genexpr>) here
        if n in raw:
            return True
    return False


def _has_all(raw: bytes, needles: list[bytes]) -> bool:
    for n in needles:  # noqa: SIM110 - a plain loop is faster than all(<genexpr>) here
        if n not in raw:
            return False
    return True


def search(log_dir: Path, flt: Filter) -> Iterator[Found]:
    """Matching records from every chain in `log_dir`, merged in time order, streaming."""
    chains, _ = find_chains(log_dir)
    streams = [_chain_records(c, flt) for _, c in sorted(chains.items())]
    if len(streams) == 1:
        for _, found in streams[0]:
            yield found
        return
    for _, found in heapq.merge(*streams, key=lambda t: t[0]):  # stable: ties keep chain order
        yield found
