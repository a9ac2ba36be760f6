"""Reading what an administrator types: durations, end times, `who` keys and sites.

Every function here raises StoreError with a message that names the field, so the CLI can print it
as it
is and exit 2 before anything is written. Nothing here reads the clock: `now` is an argument.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from socialguard.engine import normalise_client_ip, normalise_host
from socialguard.errors import StoreError

_DURATION = re.compile(r"(\d+)([dhm])")
_UNIT = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
WHO_KINDS = ("user", "device", "ip", "group")
EMERGENCY_SCOPES = ("all", "group")


@dataclass(frozen=True, slots=True)
class Limits:
    """What the policy says about overrides, plus the names CLI input is checked against.

    Taken from the compiled policy once per command (or per block-page form), so this module and
    the store
    never depend on the policy loader's classes.
    """

    group_names: frozenset[str]
    category_names: frozenset[str]
    grant_max: timedelta
    emergency_minutes: int
    emergency_per_day: int
    timezone: tzinfo = UTC
    # Whether the policy's categories list this (normalised) host: a single-label site such as
    # `localhost` may be granted only when the rules name it too.
    lists_host: Callable[[str], bool] | None = None
    emergency_per_day_unidentified: int = 5
    requests_per_day: int = 5
    requests_per_day_unidentified: int = 20
    # The policy's services (engine/services.py) by id; None when not checked against a policy.
    service_names: frozenset[str] | None = None
    # A checked site → the name of the service it opens ("Facebook"), or None: a domain stands
    # for its whole service (engine/services.py), so messages say what a grant really opens.
    service_label: Callable[[str], str | None] | None = None
    # A checked site → the id of the service it opens (`facebook`), or None, for records
    service_id: Callable[[str], str | None] | None = None

    @classmethod
    def from_policy(cls, policy: Any) -> Limits:
        """Read the limits from a CompiledPolicy (see docs/internals.md)."""
        return cls(
            group_names=frozenset(policy.group_names),
            category_names=frozenset(policy.category_names),
            grant_max=policy.overrides.grant_max,
            emergency_minutes=int(policy.overrides.emergency_minutes),
            emergency_per_day=int(policy.overrides.emergency_per_day),
            timezone=policy.district.timezone,
            lists_host=lambda host: host in policy.classify(host).values(),
            emergency_per_day_unidentified=int(policy.overrides.emergency_per_day_unidentified),
            requests_per_day=int(policy.overrides.requests_per_day),
            requests_per_day_unidentified=int(policy.overrides.requests_per_day_unidentified),
            service_names=frozenset(policy.services.services),
            service_label=lambda site: _service_label(policy, site),
            service_id=lambda site: _service_id(policy, site),
        )

    def describe(self, sites: tuple[str, ...] | list[str]) -> str:
        """`www.facebook.com (all of Facebook), domain:fb.me` for messages."""
        out = []
        for site in sites:
            name = self.service_label(site) if self.service_label else None
            out.append(f"{site} (all of {name})" if name else site)
        return ", ".join(out)

    def service_of(self, site: str) -> str | None:
        """The id of the service a site opens (`facebook` for www.facebook.com), or None."""
        return self.service_id(site) if self.service_id is not None else None


def _service_id(policy: Any, site: str) -> str | None:
    if site.startswith("service:"):
        return site.removeprefix("service:")
    if site.startswith(("category:", "domain:")):
        return None
    found: str | None = policy.service_of(site)
    return found


def _service_label(policy: Any, site: str) -> str | None:
    service = _service_id(policy, site)
    name: str | None = policy.services.name_of(service) if service else None
    return name


def parse_duration(text: str, *, field: str = "--for") -> timedelta:
    """`45m`, `2h`, `3d` or a sum such as `1h30m`; zero and anything else is refused."""
    raw = text.strip().lower()
    if not raw or _DURATION.sub("", raw):
        raise StoreError(f"{field}: {text!r} is not a duration (examples: 45m, 2h, 3d, 1h30m)")
    total = sum((int(n) * _UNIT[u] for n, u in _DURATION.findall(raw)), timedelta())
    if total <= timedelta():
        raise StoreError(f"{field}: the duration must be longer than zero")
    return total


def parse_until(text: str, *, now: datetime, zone: tzinfo, field: str = "--until") -> datetime:
    """An ISO-8601 time, or `HH:MM` today; without an offset it is the district's wall-clock time.

    Returned in UTC. An end that is not in the future is refused here, so no caller can forget to.
    """
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}", raw):
            local_today = now.astimezone(zone).date()
            when = datetime.combine(local_today, time.fromisoformat(raw.zfill(5)), tzinfo=zone)
        else:
            when = datetime.fromisoformat(raw)
            if when.tzinfo is None:
                when = when.replace(tzinfo=zone)
    except ValueError as e:
        raise StoreError(
            f"{field}: {text!r} is not a time (examples: 15:30, 2026-12-01T15:30, "
            "2026-12-01T15:30-07:00)"
        ) from e
    when = when.astimezone(UTC)
    if when <= now:
        raise StoreError(f"{field}: {text} is in the past")
    return when


def check_reason(reason: str | None, *, field: str = "--reason") -> str:
    """Every change says why: an empty or blank reason is refused."""
    text = (reason or "").strip()
    if not text:
        raise StoreError(f"{field}: a reason is required (it goes in the audit log)")
    if len(text) > 2000:
        raise StoreError(f"{field}: keep the reason under 2000 characters")
    return text


def check_who(who: str, limits: Limits | None, *, field: str = "--who") -> str:
    """`user:NAME`, `device:ID`, `ip:ADDR` or `group:NAME` (a group the policy defines)."""
    kind, sep, name = who.strip().partition(":")
    kind = kind.lower()
    name = name.strip()
    if not sep or kind not in WHO_KINDS or not name:
        raise StoreError(f"{field}: {who!r} should be user:NAME, device:ID, ip:ADDR or group:NAME")
    if kind == "ip":
        try:
            name = normalise_client_ip(name)  # as the proxy sees it (IPv4-mapped → IPv4)
        except ValueError as e:
            raise StoreError(f"{field}: {name!r} is not an IP address") from e
    if kind == "group" and limits is not None and name not in limits.group_names:
        raise StoreError(f"{field}: unknown group {name!r}{_known(limits.group_names)}")
    return f"{kind}:{name}"


def check_scope(scope: str, limits: Limits | None, *, field: str = "--scope") -> str:
    """An administrator's emergency covers `all` or one `group:NAME`."""
    raw = scope.strip()
    if raw.lower() == "all":
        return "all"
    if not raw.lower().startswith("group:"):
        raise StoreError(f"{field}: {scope!r} should be all or group:NAME")
    return check_who(raw, limits, field=field)


def check_site(site: str, limits: Limits | None, *, field: str = "--site") -> str:
    """A domain (normalised like the engine does), `category:NAME` (a category the policy
    defines), `service:ID` (a service the policy's catalogue defines) or `domain:DOMAIN` (that
    domain alone: a plain domain stands for its whole service, see engine/services.py)."""
    raw = site.strip()
    if raw.lower().startswith("service:"):
        name = raw.split(":", 1)[1].strip().lower()
        if not name:
            raise StoreError(f"{field}: {site!r} names no service")
        known = limits.service_names if limits is not None else None
        if known is not None and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else " (see rules/services.yaml)"
            raise StoreError(f"{field}: unknown service {name!r}{hint}")
        return f"service:{name}"
    if raw.lower().startswith("domain:"):
        inner = check_site(raw.split(":", 1)[1], limits, field=field)
        if ":" in inner and not inner.startswith("["):
            raise StoreError(f"{field}: {site!r}: domain: takes a domain such as www.facebook.com")
        return "domain:" + inner
    if raw.lower().startswith("category:"):
        name = raw.split(":", 1)[1].strip()
        if not name:
            raise StoreError(f"{field}: {site!r} names no category")
        if limits is not None and name not in limits.category_names:
            raise StoreError(f"{field}: unknown category {name!r}{_known(limits.category_names)}")
        return f"category:{name}"
    try:
        host = normalise_domain(raw, listed=limits.lists_host if limits else None)
    except ValueError as e:
        raise StoreError(f"{field}: {site!r} is not a domain: {e}") from e
    return host


def normalise_domain(raw: str, listed: Callable[[str], bool] | None = None) -> str:
    """Normalise a site the way the engine normalises hosts, so a grant matches what the proxy
    sees.

    A single label (`com`) would open every site under it, so it is refused, unless the rules
    list that very name (`localhost`, an intranet host): a grant may name what a rule names.
    """
    if "/" in raw or not raw.strip():
        raise ValueError("expected a bare domain such as facebook.com")
    host = normalise_host(raw)
    if "." not in host and ":" not in host and not (listed and listed(host)):
        raise ValueError(
            "expected a domain with a dot, such as facebook.com "
            "(the rules list no such single-label name)"
        )
    return host


def check_sites(sites: list[str] | tuple[str, ...], limits: Limits | None) -> tuple[str, ...]:
    """At least one site; duplicates dropped, order kept."""
    if not sites:
        raise StoreError("--site: at least one site (a domain or category:NAME) is required")
    out: list[str] = []
    for s in sites:
        norm = check_site(s, limits)
        if norm not in out:
            out.append(norm)
    return tuple(out)


def domains_alone(sites: tuple[str, ...]) -> tuple[str, ...]:
    """`--domain-only`: each plain domain becomes `domain:DOMAIN` (that domain and its subdomains,
    not its whole service); `service:`, `category:` and `domain:` sites stay as they are."""
    return tuple(s if ":" in s and not s.startswith("[") else f"domain:{s}" for s in sites)


def check_grant_end(ends: datetime, *, now: datetime, limits: Limits | None, field: str) -> None:
    """A grant must end in the future and no later than the policy's maximum allows."""
    if ends <= now:
        raise StoreError(f"{field}: the end is in the past")
    if limits is not None and ends - now > limits.grant_max + timedelta(seconds=1):
        raise StoreError(
            f"{field}: longer than the policy allows (overrides.grant_max is "
            f"{format_duration(limits.grant_max)})"
        )


def format_duration(d: timedelta) -> str:
    """The inverse of parse_duration, for messages: 3d, 2h30m, 45m."""
    minutes = int(d.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return "".join(parts) or f"{int(d.total_seconds())}s"


def _known(names: frozenset[str]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (the policy defines none)"
