"""The rules file's schema: what IT may write, checked field by field.

Strict, frozen pydantic models with `extra="forbid"`, so a misspelt key is an error rather than a
silently ignored setting. Models check the shape and the spelling of each value; references between
sections (a rule naming a group, a schedule, a category) are resolved by the compiler, which knows
every section. To add a section (e.g. `uploads:` or `accounts:`), add a model here and a field on
PolicyFile with a default, then compile it in `compile.py`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from socialguard.engine.accounts import AccountsSpec
from socialguard.engine.gateway import parse_gateway_service
from socialguard.engine.identity import IdentitySpec
from socialguard.engine.notifications import NotificationsSpec
from socialguard.engine.roles import check_member
from socialguard.engine.schedule import parse_days, parse_period
from socialguard.policy.uploads import UploadsSpec

__all__ = [
    "CategorySpec",
    "DistrictSpec",
    "GroupSpec",
    "IncludeFile",
    "ListRef",
    "PolicyFile",
    "PolicyTestSpec",
    "RoleSpec",
    "RuleSpec",
    "ScheduleSpec",
    "WhatSpec",
    "parse_duration",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?\Z")


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def parse_duration(text: str) -> timedelta:
    """`45m`, `8h`, `1h30m`, `3d` → timedelta; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(f"duration {text!r} must look like 45m, 8h, 1h30m or 3d")
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _check_name(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} {value!r} may hold only letters, digits, '-', '_' and '.'")
    return value


def _check_networks(values: list[str]) -> list[str]:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"{v!r} is not a network in CIDR form ({e})") from None
    return values


class DistrictSpec(_Spec):
    name: str
    timezone: str = "America/Denver"
    policy_url: str | None = None
    contact: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r} (e.g. America/Denver)") from None
        return v


def _period_text(value: str) -> str:
    parse_period(value)
    return value


def _days_text(value: str) -> str:
    parse_days(value)
    return value


def _date_item(value: Any) -> Any:
    parse_date_range(value)
    return value


def _date_key(value: Any) -> Any:
    parse_date(value)
    return value


# Checked one by one, so that an error points at the very entry (its own line in the file).
PeriodText = Annotated[str, AfterValidator(_period_text)]
DaysKey = Annotated[str, AfterValidator(_days_text)]
DateItem = Annotated[Any, AfterValidator(_date_item)]
DateKey = Annotated[Any, AfterValidator(_date_key)]


class ScheduleSpec(_Spec):
    """Weekly hours, closed days/ranges, special days; `extends` another schedule (per-school
    hours)."""

    description: str | None = None
    extends: str | None = None
    weekly: dict[DaysKey, list[PeriodText]] = Field(default_factory=dict)
    closed: list[DateItem] = Field(default_factory=list)
    special: dict[DateKey, list[PeriodText]] = Field(default_factory=dict)

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[int, str] = {}
        for key in v:
            for day in parse_days(key):
                if day in seen:
                    raise ValueError(f"day {key!r} overlaps {seen[day]!r}: give each weekday once")
                seen[day] = key
        return v


def parse_date(value: Any) -> date:
    """A YAML date (`2026-11-26`, read as a date) or the same text quoted."""
    if isinstance(value, datetime):
        raise ValueError(f"{value} is a date and time; give a date (YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


_MAX_RANGE_DAYS = 3660


def parse_date_range(value: Any) -> tuple[date, date]:
    """`2026-11-26` or `2026-12-21..2027-01-01` (inclusive) → (first, last)."""
    if isinstance(value, str) and ".." in value:
        first_text, _, last_text = value.partition("..")
        first, last = parse_date(first_text), parse_date(last_text)
        if last < first:
            raise ValueError(f"date range {value!r} ends before it starts")
        if (last - first).days > _MAX_RANGE_DAYS:
            raise ValueError(f"date range {value!r} spans more than ten years")
        return first, last
    d = parse_date(value)
    return d, d


class GroupSpec(_Spec):
    description: str | None = None
    networks: list[str] = Field(default_factory=list)
    devices: str | None = None  # inventory file (CSV or YAML), relative to the rules file
    users: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return _check_networks(v)


class ListRef(_Spec):
    path: str
    format: Literal["auto", "plain", "hosts", "ut1"] = "auto"


class CategorySpec(_Spec):
    description: str | None = None
    domains: list[str] = Field(default_factory=list)
    lists: list[str | ListRef] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)

    @field_validator("lists", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [ListRef(**x) if isinstance(x, dict) else x for x in v]
        return v

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return _check_networks(v)


_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


class ServiceSpec(_Spec):
    """One service (engine/services.py): the name people know and every domain it needs to work.

    Defined in the catalogue (an included file such as services.yaml); the rules file may change
    one: `name` or `domains` replace the catalogue's, `add` appends domains, `lists` attach
    domain lists (e.g. one written by `socialguard rules import`).
    """

    name: str | None = None
    domains: list[str] | None = None
    add: list[str] = Field(default_factory=list)
    lists: list[str | ListRef] = Field(default_factory=list)

    @field_validator("lists", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [ListRef(**x) if isinstance(x, dict) else x for x in v]
        return v


class WhatSpec(_Spec):
    """Destinations (any of categories/domains/urls/networks) and request conditions (all must
    hold)."""

    categories: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)
    methods: list[str] | None = None
    uploads: bool | None = None
    doh: bool = False

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        for m in v or ():
            if m.upper() not in _METHODS:
                raise ValueError(f"unknown HTTP method {m!r}")
        return v

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return _check_networks(v)


class RuleSpec(_Spec):
    id: str
    description: str
    enabled: bool = (
        True  # the district's on/off choice for a policy bullet; off = validated, not applied
    )
    reason: str | None = None  # shown on the block page; defaults to the description
    who: list[str] | None = None  # group names, user:NAME, device:ID; omitted = everyone
    what: WhatSpec = Field(default_factory=WhatSpec)
    when: Any = None  # a schedule name, {not: NAME}, or omitted = always
    action: Literal["allow", "block"]
    bypass: Any = None  # [grant, emergency], a subset, none, or omitted = none

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_name(v, "rule id")

    @field_validator("when")
    @classmethod
    def _when(cls, v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, dict) and list(v) == ["not"] and isinstance(v["not"], str):
            return v
        raise ValueError("must be a schedule name or {not: SCHEDULE}")

    @field_validator("bypass")
    @classmethod
    def _bypass(cls, v: Any) -> Any:
        if v is None or v in ("none", ["none"]):
            return None
        if isinstance(v, list) and all(x in ("grant", "emergency") for x in v):
            return v
        raise ValueError("must list grant and/or emergency, or be none")


class PolicyTestSpec(_Spec):
    """One expected decision: `{url, client, at, expect}` plus optional user, mac, method, rule,
    basis."""

    name: str | None = None
    url: str
    client: str
    at: str | datetime
    expect: Literal["allow", "block"]
    user: str | None = None
    mac: str | None = None
    method: str = "GET"
    upload: bool = False
    rule: str | None = None
    basis: Literal["rule", "grant", "emergency", "default", "ambiguous"] | None = None


class IncludeFile(_Spec):
    """A file named in `include:`: shared schedules, groups, categories and services (no rules of
    its own)."""

    schedules: dict[str, ScheduleSpec] = Field(default_factory=dict)
    groups: dict[str, GroupSpec] = Field(default_factory=dict)
    categories: dict[str, CategorySpec] = Field(default_factory=dict)
    services: dict[str, ServiceSpec] = Field(default_factory=dict)


class OverridesSpec(_Spec):
    grant_max: str = "8h"
    emergency_minutes: int = Field(default=30, ge=1, le=24 * 60)
    emergency_per_day: int = Field(default=2, ge=0, le=100)
    # Without a user or device the proxy knows only an address; every such principal shares
    # these (engine/limits.py says why).
    emergency_per_day_unidentified: int = Field(default=5, ge=0, le=1000)
    requests_per_day: int = Field(default=5, ge=0, le=100)
    requests_per_day_unidentified: int = Field(default=20, ge=0, le=1000)

    @field_validator("grant_max")
    @classmethod
    def _grant_max(cls, v: str) -> str:
        parse_duration(v)
        return v


def _member(value: str) -> str:
    return check_member(value)


class RoleSpec(_Spec):
    """One administrators' role (engine/roles.py): who, and what they may grant or declare."""

    description: str | None = None
    members: list[Annotated[str, AfterValidator(_member)]] = Field(min_length=1)
    groups: list[str] | Literal["all"] = "all"  # policy groups their grants may name
    services: list[str] | Literal["all"] = "all"  # service ids their grants may open
    grant_max: str | None = None  # at most overrides.grant_max; default: that
    emergencies: Literal["none", "services", "groups", "all"] = "none"
    review: bool = False  # review and acknowledge self-declared emergencies
    requests: bool = True  # approve and deny access requests (within groups and services)

    @field_validator("grant_max")
    @classmethod
    def _grant_max(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class LoggingSpec(_Spec):
    paths: bool = False


class AuthSpec(_Spec):
    htpasswd: str | None = None


class PolicyFile(_Spec):
    """The top level of `rules/policy.yaml`."""

    @field_validator("gateway_services")
    @classmethod
    def _gateway_services(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_gateway_service(text)
        return v

    district: DistrictSpec
    include: list[str] = Field(default_factory=list)
    schedules: dict[str, ScheduleSpec] = Field(default_factory=dict)
    groups: dict[str, GroupSpec] = Field(default_factory=dict)
    categories: dict[str, CategorySpec] = Field(default_factory=dict)
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)
    default: Literal["allow", "block"] = "allow"
    fail: Literal["closed", "open"] = "closed"
    ip_literals: Literal["inspect", "allow", "block"] = "inspect"
    blocked_connections: Literal["inspect", "reset"] = "inspect"
    # services on the gateway itself that clients may reach through it (engine/gateway.py)
    gateway_services: list[str] = Field(default_factory=list)
    overrides: OverridesSpec = Field(default_factory=OverridesSpec)
    logging: LoggingSpec = Field(default_factory=LoggingSpec)
    auth: AuthSpec = Field(default_factory=AuthSpec)
    uploads: UploadsSpec = Field(default_factory=UploadsSpec)  # policy/uploads.py
    accounts: AccountsSpec = Field(default_factory=AccountsSpec)  # engine/accounts.py
    identity: IdentitySpec = Field(default_factory=IdentitySpec)  # engine/identity.py
    notifications: NotificationsSpec = Field(default_factory=NotificationsSpec)  # ditto
    roles: dict[str, RoleSpec] = Field(default_factory=dict)  # engine/roles.py
    tests: list[PolicyTestSpec] = Field(default_factory=list)
