"""The rules file's `notifications:` section, and who is told of what (pure: no I/O, no clock).

```yaml
notifications:
  email:                                  # one SMTP relay (STARTTLS and AUTH by default)
    host: smtp.district.example
    port: 587
    username: socialguard
    password_file: secrets/smtp-password  # relative to the rules file
    from: "socialguard <socialguard@district.example>"
  webhooks:
    ops: {url: "https://hooks.slack.com/services/T/B/X", format: slack}
    it: {url: "https://district.webhook.office.com/...", format: teams}
    siem: {url: "https://siem.district.example/hook", format: generic, secret_file: secrets/hook}
  people: {jdoe: jdoe@district.example}   # user name (or user:/device:/ip: key) → address
  recipients:
    - when: [request_filed, emergency_declared]
      groups: [school-a-staff]            # omitted: every group, and events concerning none
      email: [principal.a@district.example]
      webhook: [ops]
```

The proxy's delivery worker (socialguard.notify) asks `route()` whom a notice goes to: every
`recipients` entry whose `when` lists its kind and whose `groups` (if any) the notice concerns,
plus the person it is about, for the outcomes that are theirs (`tell_person`), when an address is
known for them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "KINDS",
    "PERSON_KINDS",
    "Notice",
    "NotificationSettings",
    "NotificationsSpec",
    "Target",
    "route",
]

# What can be told: a request filed from the block page, a self-declared emergency, the answer to
# a request, a grant or emergency about to end, a rules file the proxy refused.
Kind = Literal[
    "request_filed",
    "emergency_declared",
    "request_approved",
    "request_denied",
    "grant_ending",
    "emergency_ending",
    "rules_rejected",
]
KINDS: tuple[str, ...] = get_args(Kind)
# The kinds that are news to the person they concern (their answer, their access ending).
PERSON_KINDS = frozenset({"request_approved", "request_denied", "grant_ending", "emergency_ending"})

_EMAIL = re.compile(r"[^@\s<>\"',;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?\Z")


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", populate_by_name=True)


def check_email(value: str) -> str:
    """A bare address (`name@host.tld`); ValueError otherwise (no display names, no newlines)."""
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address (name@host.example)")
    return value


def duration_minutes(text: str) -> int:
    """`15m`, `1h`, `2d` → minutes; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(f"duration {text!r} must look like 15m, 1h, 1h30m or 3d")
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + minutes


def is_loopback_host(host: str) -> bool:
    """Is `host` this machine (127.0.0.0/8, ::1, localhost)? Only there is plain text allowed."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailServerSpec(_Spec):
    """The SMTP relay mail is handed to."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: plain connection upgraded before AUTH (port 587); tls: TLS from the first byte
    # (port 465); none: only to a relay on this machine (loopback).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_file: str | None = None  # relative to the rules file; its first line is used
    ca_file: str | None = None  # a district CA the relay's certificate chains to; default: system
    sender: str = Field(alias="from")
    timeout: int = Field(default=10, ge=1, le=120)  # seconds, per SMTP exchange

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        address = v.rsplit("<", 1)[-1].rstrip(">").strip() if "<" in v else v
        check_email(address)
        if "\n" in v or "\r" in v:
            raise ValueError("must be one line")
        return v

    @model_validator(mode="after")
    def _secure(self) -> EmailServerSpec:
        if self.security == "none" and not is_loopback_host(self.host):
            raise ValueError(
                f"security: none sends mail and password in clear; allowed only to a relay on "
                f"this machine, not {self.host!r} (use starttls or tls)"
            )
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together (AUTH needs both)")
        return self


class WebhookSpec(_Spec):
    """One webhook: a URL that takes a JSON POST, in the format its receiver reads."""

    url: str
    format: Literal["generic", "slack", "teams"] = "generic"
    secret_file: str | None = None  # generic: HMAC-SHA256 key, relative to the rules file
    timeout: int = Field(default=10, ge=1, le=60)  # seconds for the whole POST

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError(
                f"{v!r}: webhooks go over https (plain http only to this machine, for a local "
                "relay)"
            )
        return v

    @model_validator(mode="after")
    def _secret(self) -> WebhookSpec:
        if self.secret_file is not None and self.format != "generic":
            raise ValueError(
                "secret_file signs generic webhooks; Slack and Teams URLs carry their own secret"
            )
        return self


class RecipientSpec(_Spec):
    """Who is told of which kinds of notice, for which groups."""

    when: list[Kind] = Field(min_length=1)
    groups: list[str] | None = None  # policy groups; omitted: every notice
    email: list[str] = Field(default_factory=list)
    webhook: list[str] = Field(default_factory=list)

    @field_validator("email", mode="before")
    @classmethod
    def _one_email(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("webhook", mode="before")
    @classmethod
    def _one_webhook(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("email")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for address in v:
            check_email(address)
        return v

    @model_validator(mode="after")
    def _somebody(self) -> RecipientSpec:
        if not self.email and not self.webhook:
            raise ValueError("names nobody: give email and/or webhook")
        return self


class NotificationsSpec(_Spec):
    """The `notifications:` section (see the module docstring)."""

    email: EmailServerSpec | None = None
    webhooks: dict[str, WebhookSpec] = Field(default_factory=dict)
    people: dict[str, str] = Field(default_factory=dict)
    recipients: list[RecipientSpec] = Field(default_factory=list)
    # the person a request, grant or emergency concerns is mailed its outcome / its end
    tell_person: bool = True
    ending_lead: str = "15m"  # how long before a grant or emergency ends it is announced
    give_up_after: str = "3d"  # a delivery still failing after this long is abandoned (logged)

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, v: dict[str, WebhookSpec]) -> dict[str, WebhookSpec]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"webhook name {name!r}: letters, digits, '-', '_', '.' only")
        return v

    @field_validator("people")
    @classmethod
    def _people(cls, v: dict[str, str]) -> dict[str, str]:
        for who, address in v.items():
            check_email(address)
            if ":" in who and who.split(":", 1)[0] not in ("user", "device", "ip"):
                raise ValueError(f"{who!r}: a user name, or a user:, device: or ip: key")
        return v

    @field_validator("ending_lead", "give_up_after")
    @classmethod
    def _durations(cls, v: str) -> str:
        if duration_minutes(v) <= 0:
            raise ValueError(f"duration {v!r} must be longer than zero")
        return v


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """`NotificationsSpec` with its files resolved against the rules file's directory."""

    spec: NotificationsSpec = field(default_factory=NotificationsSpec)
    base: Path = Path()
    people: Mapping[str, str] = field(default_factory=dict)  # person key → address

    @classmethod
    def compile(cls, spec: NotificationsSpec, base: Path) -> NotificationSettings:
        people = {(k if ":" in k else f"user:{k}"): a for k, a in spec.people.items()}
        return cls(spec, base, people)

    def file(self, relative: str) -> Path:
        return self.base / relative

    @property
    def ending_lead_minutes(self) -> int:
        return duration_minutes(self.spec.ending_lead)

    @property
    def give_up_minutes(self) -> int:
        return duration_minutes(self.spec.give_up_after)


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing to tell: its kind, the groups it concerns, the person it concerns (a person
    key, `user:jdoe`), and its facts (site, reason, who decided, until when...)."""

    kind: str
    groups: tuple[str, ...] = ()
    person: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One delivery: `channel` email (to `address`) or webhook (the named one)."""

    channel: Literal["email", "webhook"]
    recipient: str


def route(
    notice: Notice,
    settings: NotificationSettings,
    group_parents: Mapping[str, Iterable[str]] | None = None,
    email_of: Callable[[str], str | None] | None = None,
) -> list[Target]:
    """Whom `notice` goes to, each once, in a stable order.

    A recipient with `groups` is told of notices concerning one of them, counting a group that
    includes the notice's (`group_parents`: group → itself and every group including it); one
    without is told of every notice of its kinds. The person concerned is told the kinds that
    are theirs when `tell_person` is on and `email_of` (or `people:`) knows their address.
    """
    parents = group_parents or {}
    concerned: set[str] = set()
    for g in notice.groups:
        concerned.add(g)
        concerned.update(parents.get(g, ()))
    out: set[Target] = set()
    for r in settings.spec.recipients:
        if notice.kind not in r.when:
            continue
        if r.groups is not None and not concerned.intersection(r.groups):
            continue
        out.update(Target("email", a.lower()) for a in r.email)
        out.update(Target("webhook", w) for w in r.webhook)
    if notice.person and notice.kind in PERSON_KINDS and settings.spec.tell_person:
        address = settings.people.get(notice.person)
        if address is None and email_of is not None:
            address = email_of(notice.person)
        if address:
            out.add(Target("email", address.lower()))
    if settings.spec.email is None:
        out = {t for t in out if t.channel != "email"}  # no relay: checked at load, belt and braces
    return sorted(out)
