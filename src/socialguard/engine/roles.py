"""Who may grant what: the rules file's `roles:`, and the one question they answer.

Commercial filters scope each administrator (by school, by service); without that, anyone who can
run the CLI may grant anything up to `overrides.grant_max` to anyone. A role names its members (OS
users and OS groups on the gateway, or directory user names as the identity sources give them) and
what they may do: grant for which policy groups and services, for how long at most, which
emergencies they may declare, whether they review self-declared emergencies and answer access
requests.

`authorize(roles, admin, act)` is pure: the CLI finds the acting person (the real OS user) and the
facts about the target (its groups, the services its sites open) and asks. With no roles at all
every act is allowed: a district that names no administrators keeps the behaviour it had.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

__all__ = [
    "EMERGENCY_LEVELS",
    "MEMBER_KINDS",
    "Admin",
    "AdminAct",
    "Permission",
    "Role",
    "Roles",
    "authorize",
    "check_member",
    "target_groups",
]

EmergencyLevel = Literal["none", "services", "groups", "all"]
EMERGENCY_LEVELS: tuple[str, ...] = ("none", "services", "groups", "all")
MEMBER_KINDS: tuple[str, ...] = ("user", "os-group")

# What the CLI asks about, in the words of the admin event that records a refusal.
ActName = Literal[
    "grant_add",
    "grant_revoke",
    "request_approve",
    "request_deny",
    "emergency_start",
    "emergency_stop",
    "emergency_review",
    "emergency_ack",
]


def check_member(text: str) -> str:
    """`user:NAME` or `os-group:NAME` (normalised: kind lower case, no spaces); ValueError
    otherwise."""
    kind, sep, name = text.strip().partition(":")
    kind, name = kind.strip().lower(), name.strip()
    if not sep or kind not in MEMBER_KINDS or not name or any(c.isspace() for c in name):
        raise ValueError(f"member {text!r} should be user:NAME or os-group:NAME")
    return f"{kind}:{name}"


@dataclass(frozen=True, slots=True)
class Role:
    """One role of the rules file, compiled. `groups`/`services` None means every one."""

    name: str
    members: frozenset[str]
    groups: frozenset[str] | None = None
    services: frozenset[str] | None = None
    grant_max: timedelta | None = None  # None: the policy's overrides.grant_max
    emergencies: EmergencyLevel = "none"
    review: bool = False
    requests: bool = True


@dataclass(frozen=True, slots=True)
class Roles:
    """Every role; empty means no administrator is named and every act is allowed."""

    roles: tuple[Role, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.roles)

    def of(self, admin: Admin) -> tuple[Role, ...]:
        """The roles naming this person (as a user or through one of their OS groups)."""
        names = admin.names()
        return tuple(r for r in self.roles if r.members & names)


@dataclass(frozen=True, slots=True)
class Admin:
    """The person acting: their user name and the OS groups they belong to."""

    user: str
    os_groups: frozenset[str] = frozenset()

    def names(self) -> frozenset[str]:
        return frozenset({f"user:{self.user}", *(f"os-group:{g}" for g in self.os_groups)})


@dataclass(frozen=True, slots=True)
class AdminAct:
    """One change an administrator asks for, with the facts a role is judged on.

    `groups` are the policy groups the target belongs to (with every group including them); None
    when the policy cannot tell (a directory user the rules file does not list). `services` holds
    the service id each site opens, None for a site in no service (a category, a lone domain).
    `every_site` is an emergency without --site; `scope_all` one for the whole district.
    """

    action: ActName
    target: str = ""
    groups: frozenset[str] | None = frozenset()
    services: tuple[str | None, ...] = ()
    every_site: bool = False
    scope_all: bool = False
    length: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Permission:
    """The answer: allowed (by which role), or refused and why, in words."""

    allowed: bool
    role: str | None = None
    reason: str = ""


def authorize(roles: Roles, admin: Admin, act: AdminAct) -> Permission:
    """May `admin` do `act`? Allowed when any of their roles allows it; else the reason the
    closest role gives (or that no role names them)."""
    if not roles.configured:
        return Permission(True)
    mine = roles.of(admin)
    if not mine:
        return Permission(
            False, None, f"{admin.user} is named by no role in the rules file (roles:)"
        )
    reasons: list[str] = []
    for role in mine:
        why = _refusal(role, act)
        if why is None:
            return Permission(True, role.name)
        reasons.append(f"role {role.name}: {why}")
    return Permission(False, None, "; ".join(reasons))


def _refusal(role: Role, act: AdminAct) -> str | None:
    """Why `role` does not allow `act`, or None when it does."""
    match act.action:
        case "grant_add" | "grant_revoke":
            return _covers(role, act) or _length(role, act)
        case "request_approve" | "request_deny":
            if not role.requests:
                return "may not answer access requests"
            return _covers(role, act) or _length(role, act)
        case "emergency_start" | "emergency_stop":
            return _emergency(role, act)
        case "emergency_review" | "emergency_ack":
            return None if role.review else "may not review self-declared emergencies"
    return f"unknown act {act.action!r}"  # pragma: no cover - ActName is closed


def _covers(role: Role, act: AdminAct) -> str | None:
    return _groups(role, act) or _services(role, act)


def _groups(role: Role, act: AdminAct) -> str | None:
    if role.groups is None:
        return None
    if act.scope_all:
        return "may act for its own groups only, not the whole district"
    if act.groups is None:
        return (
            f"the rules file does not place {act.target} in a group "
            f"(the role covers {_names(role.groups)})"
        )
    if act.groups & role.groups:
        return None
    return f"{act.target} is not in its groups ({_names(role.groups)})"


def _services(role: Role, act: AdminAct) -> str | None:
    if role.services is None:
        return None
    if act.every_site:
        return f"may open its services only ({_names(role.services)}), not every site"
    outside = sorted({s or "a site in no service" for s in act.services if s not in role.services})
    if outside:
        return f"{', '.join(outside)} is not among its services ({_names(role.services)})"
    return None


def _length(role: Role, act: AdminAct) -> str | None:
    if role.grant_max is None or act.length is None:
        return None
    if act.length > role.grant_max + timedelta(seconds=1):
        return f"grants at most {_duration(role.grant_max)}"
    return None


def _emergency(role: Role, act: AdminAct) -> str | None:
    level = role.emergencies
    if level == "all":
        return None
    if level == "none":
        return "may not declare or stop emergencies"
    if level == "groups" and act.scope_all:
        return "may declare emergencies for its groups only (--scope group:NAME)"
    if level == "services" and act.every_site:
        return f"may declare emergencies on its services only (--site; {_names(role.services)})"
    return _covers(role, act)


def target_groups(policy: Any, who: str) -> frozenset[str] | None:
    """The policy groups (with every group including them) a grant's `who` belongs to, as far as
    the rules file tells; None when it cannot (a user or device it does not list).

    `policy` is a CompiledPolicy; only its group tables are read.
    """
    kind, _, name = who.partition(":")
    parents = policy.group_parents
    direct: Iterable[str]
    if kind == "group":
        direct = (name,)
    elif kind == "user":
        direct = policy.group_users.get(name, ())
    elif kind == "device":
        device = policy.devices.by_id.get(name)
        direct = device.groups if device is not None else ()
    elif kind == "ip":
        try:
            addr = ipaddress.ip_address(name)
        except ValueError:
            return None
        direct = [g for net, g in policy.group_networks.entries if addr in net]
    else:
        return None
    out: set[str] = set()
    for g in direct:
        out |= parents.get(g, {g})
    return frozenset(out) or None


def _names(names: frozenset[str] | None) -> str:
    return "every one" if names is None else ", ".join(sorted(names))


def _duration(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = f"{days}d" * bool(days) + f"{hours}h" * bool(hours) + f"{mins}m" * bool(mins)
    return text or f"{int(d.total_seconds())}s"
