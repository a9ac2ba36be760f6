"""The value types every part of socialguard speaks: what is asked, who asks, what was decided.

These are the contract between the engine (which decides), the proxy (which asks), the overrides
store (which feeds grants and emergencies in) and the audit log (which records the answer). They are
plain frozen dataclasses so that the engine stays pure and a Decision can be logged, compared and
replayed without any of the machinery that produced it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What happens to a request (or, at connection level, see ConnectionVerdict)."""

    ALLOW = "allow"
    BLOCK = "block"


class ConnectionVerdict(StrEnum):
    """What happens to a TLS connection before any request is seen (decided on the SNI)."""

    PASS = "pass"  # forwarded without decryption: nothing could change the verdict while it is open
    INSPECT = "inspect"  # decrypted; every request inside is decided on its own
    BLOCK = "block"  # refused at the TLS layer (no block page possible)


class Basis(StrEnum):
    """Why a decision came out as it did; the audit log's `basis` field."""

    RULE = "rule"
    GRANT = "grant"
    EMERGENCY = "emergency"
    DEFAULT = "default"
    ERROR = "error"  # the engine or the proxy failed; the policy's failure mode applied
    AMBIGUOUS = "ambiguous"  # the request reads differently to different servers: refused
    SIGN_IN = "sign_in"  # the sign-in page itself, or a device sent there to sign in first


class Bypass(StrEnum):
    """Which overrides may lift a rule (`bypass:` in the rules file)."""

    GRANT = "grant"
    EMERGENCY = "emergency"


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """One HTTP request (or one TLS ClientHello) as the engine sees it.

    `host` is already normalised (see engine.hosts.normalise_host); the proxy never hands the
    engine a raw Host header. `sni` is set when it came from TLS; when it differs from `host` the
    proxy asks the engine twice and keeps the stricter answer (domain fronting).
    """

    host: str
    scheme: str = "https"
    method: str = "GET"
    path: str = "/"
    port: int | None = None
    sni: str | None = None
    upload: bool = False  # the request carries files or a body over the policy's size limit
    content_type: str | None = None  # the request's own Content-Type, for DoH-by-form checks
    accept: str | None = None  # the request's Accept header, for DoH-by-form checks

    def __init__(  # noqa: PLR0917 - the dataclass's fields, in order, as it would take them
        self,
        host: str,
        scheme: str = "https",
        method: str = "GET",
        path: str = "/",
        port: int | None = None,
        sni: str | None = None,
        upload: bool = False,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> None:
        """The frozen dataclass's own __init__, about three times as fast.

        The proxy makes one Request per name per request; the generated frozen __init__ calls
        object.__setattr__ once per field. This fills the same slots through their descriptors,
        which is what that call does underneath; the result is an ordinary, equal, frozen Request.
        """
        _set_host(self, host)
        _set_scheme(self, scheme)
        _set_method(self, method)
        _set_path(self, path)
        _set_port(self, port)
        _set_sni(self, sni)
        _set_upload(self, upload)
        _set_content_type(self, content_type)
        _set_accept(self, accept)


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The __set__ of a frozen slotted dataclass field's descriptor, by name (a renamed field
    fails at import). Filling slots through these is what the frozen __init__ does underneath,
    minus one object.__setattr__ call per field: the hot-path constructors use them."""
    setter: Callable[[Any, Any], None] = getattr(cls, name).__set__
    return setter


_set_host = slot_setter(Request, "host")
_set_scheme = slot_setter(Request, "scheme")
_set_method = slot_setter(Request, "method")
_set_path = slot_setter(Request, "path")
_set_port = slot_setter(Request, "port")
_set_sni = slot_setter(Request, "sni")
_set_upload = slot_setter(Request, "upload")
_set_content_type = slot_setter(Request, "content_type")
_set_accept = slot_setter(Request, "accept")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the proxy took the person to be: from address, device inventory and proxy auth."""

    client_ip: str
    groups: frozenset[str] = frozenset()
    user: str | None = None
    device: str | None = None
    mac: str | None = None
    # the identity source that bound the address to `user` (radius, dhcp, ...); None: the
    # address, the device inventory or proxy authentication
    source: str | None = None

    def keys(self) -> tuple[str, ...]:
        """The `who` keys an override can name: user:NAME, device:ID, ip:ADDR, group:NAME.
        Not ip:ADDR for a person an identity source names (`source`): the address is not theirs
        to keep, so what was given to the address is not given to them."""
        out = [] if self.source is not None else [f"ip:{self.client_ip}"]
        if self.user:
            out.append(f"user:{self.user}")
        if self.device:
            out.append(f"device:{self.device}")
        out.extend(f"group:{g}" for g in sorted(self.groups))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Grant:
    """An administrator's temporary exception ("unless asked to do so by administration").

    `who` is one of user:NAME, device:ID, ip:ADDR, group:NAME. `sites` holds registrable domains
    (matching themselves and subdomains) and/or `category:NAME`. Times are timezone-aware UTC.
    """

    id: str
    who: str
    sites: tuple[str, ...]
    starts: datetime
    ends: datetime
    reason: str
    by: str
    request_id: str | None = None  # the access request it answered, if any


@dataclass(frozen=True, slots=True)
class Emergency:
    """An emergency in force ("except in an emergency").

    Declared by an administrator for `all` or `group:NAME`, or self-declared from the block page
    by one person (`scope` is then user:/device:/ip:, `sites` names the site, and `self_declared`
    is set so that it waits for an administrator's acknowledgement). Empty `sites` means every site.
    `ends` None means until stopped.
    """

    id: str
    scope: str
    starts: datetime
    ends: datetime | None
    reason: str
    by: str
    sites: tuple[str, ...] = ()
    self_declared: bool = False


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One line of a decision's explanation: what was considered and what came of it."""

    step: str  # e.g. "emergency", "grant", "rule:staff-social-school-hours", "default"
    outcome: str  # e.g. "no match", "matched", "skipped: not in school-hours"


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer, carrying everything needed to explain and audit it."""

    action: Action
    basis: Basis
    reason: str  # human, citing the policy
    principal: Principal
    policy_version: str
    host: str
    rule_id: str | None = None
    category: str | None = None
    matched_domain: str | None = None
    override_id: str | None = None  # grant or emergency id when basis is grant/emergency
    bypass: frozenset[Bypass] = frozenset()  # overrides the deciding rule would accept
    trace: tuple[TraceStep, ...] = field(default=(), compare=False)
    service: str | None = None  # the service (engine/services.py) the host belongs to, by id


@dataclass(frozen=True, slots=True)
class ConnectionDecision:
    """The per-connection answer: pass through, inspect, or block at TLS; `decision` is logged."""

    verdict: ConnectionVerdict
    decision: Decision
