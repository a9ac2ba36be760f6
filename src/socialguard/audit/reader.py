"""Reading the decision log back: streaming records, filtered, from every node, in time order.

Records are read file by file (plain or gzip) and line by line, never all at once, so memory stays
flat whatever the log's size. Files wholly outside `--since/--until` are skipped unopened (a file
ends where the next one of its chain begins). Cheap byte tests run before a line is parsed, so a
search that matches little parses little.
"""

from __future__ import annotations

import heapq
import ipaddress
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from socialguard.errors import AuditError

from . import files
from .chain import LineError, unseal
from .chains import Chain, find_chains
from .schema import TYPE_FILE_CLOSE, TYPE_FILE_OPEN

WHO_KINDS = ("user", "device", "ip", "group")
BOOKKEEPING = frozenset({TYPE_FILE_OPEN, TYPE_FILE_CLOSE})


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
            return record.get("user") == self.value or record.get("by") == self.value
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

    def needle(self) -> bytes | None:
        """Bytes every matching line must contain (a pre-filter before parsing)."""
        if self.kind == "ip" and "/" in self.value:
            return None
        return _json_str(self.value)


def _json_str(value: str) -> bytes:
    import json

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

    def needles(self) -> list[bytes]:
        out = []
        if self.who is not None and (n := self.who.needle()) is not None:
            out.append(n)
        if self.host:
            out.append(self.host.encode("utf-8"))
        for value in (self.category, self.action, self.basis, self.rule):
            if value:
                out.append(_json_str(value))
        return out

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
            and (self.action is None or r.get("action") == self.action)
            and (self.basis is None or r.get("basis") == self.basis)
            and (self.rule is None or r.get("rule") == self.rule)
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


@dataclass(frozen=True, slots=True)
class Found:
    """A record read back, with where it is (for messages) and its raw line."""

    record: dict[str, Any]
    where: str
    raw: bytes


def _chain_records(chain: Chain, flt: Filter) -> Iterator[tuple[str, int, Found]]:
    needles = flt.needles()
    for i, cf in enumerate(chain.files):
        next_start = chain.files[i + 1].first_ts if i + 1 < len(chain.files) else None
        if flt.since is not None and next_start is not None and next_start < flt.since:
            continue
        if flt.until is not None and cf.first_ts >= flt.until:
            break
        try:
            for lineno, raw in files.iter_lines(cf.file.path):
                if needles and not all(n in raw for n in needles):
                    continue
                try:
                    record, _, _ = unseal(raw)
                except LineError:
                    continue  # `audit verify` reports it; a search shows what can be read
                if flt.matches(record):
                    yield (
                        record.get("ts", ""),
                        record.get("seq", 0),
                        Found(record, f"{cf.file.path}:{lineno}", raw),
                    )
        except (OSError, EOFError, zlib.error) as e:
            raise AuditError(f"{cf.file.path}: cannot read: {e}") from e


def search(log_dir: Path, flt: Filter) -> Iterator[Found]:
    """Matching records from every chain in `log_dir`, merged in time order, streaming."""
    chains, _ = find_chains(log_dir)
    streams = [_chain_records(c, flt) for _, c in sorted(chains.items())]
    for _, _, found in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
        yield found
