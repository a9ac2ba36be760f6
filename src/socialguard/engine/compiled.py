"""The compiled policy: the rules file turned into the structures the engine decides with.

`socialguard.policy` builds these from YAML (validating everything with file:line); the engine
only reads them. Everything here is immutable, so a running proxy can swap one CompiledPolicy for
another atomically and requests in flight finish on the policy they started with.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from socialguard.errors import Problem

from .accounts import AccountsSpec
from .doh import is_doh_request
from .domains import DomainIndex, NetworkIndex
from .gateway import GatewayService
from .hosts import is_ip_literal
from .identity import IdentitySettings
from .model import Action, Bypass, Decision, Principal, Request, TraceStep
from .notifications import NotificationSettings
from .paths import readings
from .roles import Roles
from .schedule import Schedule
from .services import ServiceCatalogue
from .uploads import UploadRules

__all__ = [
    "DEFAULT_PORTS",
    "AuthSettings",
    "Category",
    "CompiledPolicy",
    "CompiledRule",
    "Destination",
    "Device",
    "DeviceInventory",
    "District",
    "GroupNetworks",
    "HostRules",
    "LoggingSettings",
    "OverrideLimits",
    "PolicyTest",
    "RuleIndex",
    "RuleStep",
    "UrlPrefix",
    "When",
    "is_doh_request",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# where a rule matched: (category name, or None for the rule's own domains or pages; the domain
# or host matched, or None for a rule naming no destination)
Destination = tuple[str | None, str | None]
_ANY_DESTINATION: Destination = (None, None)
FailMode = Literal["closed", "open"]
IpLiteralHandling = Literal["inspect", "allow", "block"]
BlockedConnections = Literal["inspect", "reset"]


@dataclass(frozen=True, slots=True)
class District:
    name: str
    timezone: ZoneInfo
    policy_url: str | None = None
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class OverrideLimits:
    """Bounds the overrides store enforces (`overrides:` in the rules file)."""

    grant_max: timedelta = timedelta(hours=8)
    emergency_minutes: int = 30
    emergency_per_day: int = 2
    emergency_per_day_unidentified: int = 5
    requests_per_day: int = 5
    requests_per_day_unidentified: int = 20


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    paths: bool = (
        False  # log URL paths of intercepted requests (privacy: off unless the district opts in)
    )


@dataclass(frozen=True, slots=True)
class AuthSettings:
    htpasswd: Path | None = None  # proxy authentication in regular mode


@dataclass(frozen=True, slots=True)
class Device:
    """One row of the device inventory: a district device, how it is recognised, and whom it belongs
    to."""

    id: str
    owner: str | None = None
    mac: str | None = None
    ip: str | None = None
    groups: frozenset[str] = frozenset()  # the groups whose `devices:` inventory lists it


@dataclass(frozen=True, slots=True)
class DeviceInventory:
    """MAC/IP → device; a MAC (from the gateway's neighbour table) wins over an address."""

    by_mac: Mapping[str, Device] = field(default_factory=dict)
    by_ip: Mapping[str, Device] = field(default_factory=dict)
    by_id: Mapping[str, Device] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_id)

    def find(self, ip: str | None, mac: str | None) -> Device | None:
        if mac:
            device = self.by_mac.get(normalise_mac(mac))
            if device is not None:
                return device
        return self.by_ip.get(ip) if ip else None


def normalise_mac(mac: str) -> str:
    """`AA-BB-CC-DD-EE-FF` / `aabb.ccdd.eeff` → `aa:bb:cc:dd:ee:ff`; raises ValueError otherwise."""
    digits = "".join(c for c in mac.lower() if c not in ":-.")
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True, slots=True)
class GroupNetworks:
    """Membership by address: each network with the groups it places a client in."""

    entries: tuple[tuple[IPNetwork, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    description: str | None
    domain_count: int
    network_count: int = 0
    lists: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class When:
    """A rule's `when`: in a schedule, or (negate) outside it."""

    schedule: Schedule
    negate: bool = False

    def holds(self, now: datetime) -> bool:
        return self.schedule.is_open(now) != self.negate

    def __str__(self) -> str:
        return f"not {self.schedule.name}" if self.negate else self.schedule.name


DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class UrlPrefix:
    """An approved (or blocked) page: scheme, exact host, port, and a normalised path prefix
    ending on a segment boundary (engine/paths.py says what normalised means and why)."""

    scheme: str
    host: str
    path: str
    port: int = 443
    # the port is the scheme's default: a request naming no port (None) is on it
    on_default_port: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "on_default_port", self.port == DEFAULT_PORTS.get(self.scheme))

    def matches(self, request: Request, path: str) -> bool:
        """Does this page cover the request? `path` is the request's target as
        paths.request_target normalised it. (covers() inlined: this runs on every request to an
        approved page's host.)"""
        if request.host != self.host or request.scheme != self.scheme:
            return False
        port = request.port
        if port != self.port and (port is not None or not self.on_default_port):
            return False
        prefix = self.path
        if not path.startswith(prefix):
            return False
        return len(path) == len(prefix) or prefix[-1] == "/" or path[len(prefix)] in "/?#"

    def covers(self, path: str) -> bool:
        """Is the normalised `path` on this page (the prefix, up to a segment boundary)?"""
        if not path.startswith(self.path):
            return False
        rest = path[len(self.path) :]
        return not rest or self.path.endswith("/") or rest[0] in "/?#"

    def __str__(self) -> str:
        default = DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule ready to evaluate; the TraceSteps are built once here, not per request."""

    id: str
    index: int
    description: str
    reason: str
    action: Action
    bypass: frozenset[Bypass]
    everyone: bool
    groups: frozenset[str]
    users: frozenset[str]
    devices: frozenset[str]
    tags: frozenset[str]  # destination tags: category:NAME and this rule's own rule:ID
    urls: tuple[UrlPrefix, ...]
    any_destination: bool  # the rule names no destination: it concerns every host
    methods: frozenset[str] | None
    uploads: bool | None
    doh: bool
    when: When | None
    source: str  # file:line, for messages
    step_name: str
    no_who: TraceStep
    no_what: TraceStep
    no_request: TraceStep
    not_when: TraceStep
    matched: TraceStep
    # (tag, category name or None for the rule's own domains), precomputed for destination()
    tag_categories: tuple[tuple[str, str | None], ...] = field(init=False)
    # request_matches() can say no (a method, upload or DoH condition): decide() skips the call
    # for the many rules that name destinations only
    checks_request: bool = field(init=False)
    # which overrides may lift this block, as plain booleans: `Bypass.X in self.bypass` hashes a
    # StrEnum through a Python-level __hash__, a measurable cost on every overridable request
    lifts_by_emergency: bool = field(init=False)
    lifts_by_grant: bool = field(init=False)

    def __post_init__(self) -> None:
        pairs = tuple(
            (t, t.removeprefix("category:") if t.startswith("category:") else None)
            for t in sorted(self.tags)
        )
        object.__setattr__(self, "tag_categories", pairs)
        checks = self.methods is not None or self.uploads is not None or self.doh
        object.__setattr__(self, "checks_request", checks)
        blocks = self.action is Action.BLOCK
        object.__setattr__(self, "lifts_by_emergency", blocks and Bypass.EMERGENCY in self.bypass)
        object.__setattr__(self, "lifts_by_grant", blocks and Bypass.GRANT in self.bypass)

    @property
    def request_dependent(self) -> bool:
        """Depends on more than the host (path, method, upload, DoH form): needs decryption to
        apply."""
        return bool(self.urls) or self.methods is not None or self.uploads is not None or self.doh

    def concerns(self, principal: Principal) -> bool:
        if self.everyone:
            return True
        if not self.groups.isdisjoint(principal.groups):
            return True
        if principal.user is not None and principal.user in self.users:
            return True
        return principal.device is not None and principal.device in self.devices

    def destination(
        self, request: Request, tags: Mapping[str, str], path: str | None = None
    ) -> Destination | None:
        """(category, matched domain) when the request's destination is one the rule names, else
        None; `path` as for url_destination()."""
        found = self.tag_destination(tags)
        return found if found is not None else self.url_destination(request, path)

    def tag_destination(self, tags: Mapping[str, str]) -> Destination | None:
        """destination() as far as the host's tags decide it: the same for every request to the
        host, so CompiledPolicy.host_rules() works it out once per host (or parent domain)."""
        if self.any_destination:
            return _ANY_DESTINATION
        for tag, category in self.tag_categories:
            matched = tags.get(tag)
            if matched is not None:
                return (category, matched)
        return None

    def url_destination(self, request: Request, path: str | None = None) -> Destination | None:
        """destination() by the rule's pages, for a host none of its tags name. `path` is the
        request's target normalised (paths.request_target; None: no page is on it). An allow
        covers a path only if it covers every way a server may read it (paths.readings); a block
        is reached if any reading reaches it."""
        if path is None or not self.urls:
            return None
        if ";" not in path:  # one reading (nearly every request): a plain loop, as it was
            for url in self.urls:
                if url.matches(request, path):
                    return (None, request.host)
            return None
        on_page = [any(url.matches(request, way) for url in self.urls) for way in readings(path)]
        covered = all(on_page) if self.action is Action.ALLOW else any(on_page)
        return (None, request.host) if covered else None

    def may_concern_host(self, host: str, tags: Mapping[str, str]) -> bool:
        """Could some request to this host match the rule's destination (connection-level
        question)?"""
        if self.any_destination:
            return True
        if any(tag in tags for tag in self.tags):
            return True
        return any(url.host == host for url in self.urls)

    def request_matches(self, request: Request) -> bool:
        if self.methods is not None and request.method.upper() not in self.methods:
            return False
        if self.uploads is not None and request.upload != self.uploads:
            return False
        return not self.doh or is_doh_request(request)


# A rule that may match a host, with its tag_destination() for that host.
RuleStep = tuple[CompiledRule, Destination | None]
# CompiledPolicy.host_rules(): the host's tags, its RuleSteps in file order, and whether the
# host was seen before
HostRules = tuple[Mapping[str, str], tuple[RuleStep, ...], bool]
_NO_STEPS: tuple[RuleStep, ...] = ()


def _seen_and_first(
    tags: Mapping[str, str], candidates: tuple[CompiledRule, ...]
) -> tuple[HostRules, HostRules]:
    """The HostRules a host's later lookups get, and the one its first lookup gets."""
    steps = tuple((rule, rule.tag_destination(tags)) for rule in candidates) or _NO_STEPS
    return (tags, steps, True), (tags, steps, False)


_MEMO_MAX = 4096
_HOST_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Which rules could match a host, by tag, so decide() looks only at those (in file order).

    A host's tags (from the domain index) select the rules naming them; rules naming no destination
    apply to every host; URL-prefix rules are found by their exact host. A host nobody names goes
    straight to the default without walking the rules.
    """

    by_tag: Mapping[str, tuple[CompiledRule, ...]]
    generic: tuple[CompiledRule, ...]  # rules naming no destination
    by_url_host: Mapping[str, tuple[CompiledRule, ...]]
    # merged candidate lists for hosts with several tags or an approved URL; bounded, and pure:
    # the same key always gives the same tuple, so sharing it between threads is harmless
    memo: dict[tuple[str, ...], tuple[CompiledRule, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: tuple[CompiledRule, ...]) -> RuleIndex:
        generic = tuple(r for r in rules if r.any_destination)
        tags = {t for r in rules for t in r.tags}
        by_tag = {
            t: tuple(r for r in rules if r.any_destination or t in r.tags) for t in sorted(tags)
        }
        hosts = {u.host for r in rules for u in r.urls}
        by_url_host = {
            h: tuple(r for r in rules if r.any_destination or any(u.host == h for u in r.urls))
            for h in sorted(hosts)
        }
        return cls(by_tag, generic, by_url_host)

    def candidates(self, host: str, tags: Mapping[str, str]) -> tuple[CompiledRule, ...]:
        """The rules that may match a request to `host` with these tags, in file order."""
        url_rules = self.by_url_host.get(host)
        if not tags:
            return url_rules if url_rules is not None else self.generic
        if len(tags) == 1 and url_rules is None:
            for tag in tags:
                return self.by_tag.get(tag, self.generic)
        key = (host if url_rules is not None else "", *tags)
        hit = self.memo.get(key)
        if hit is None:
            found: dict[int, CompiledRule] = {r.index: r for r in url_rules or ()}
            for tag in tags:
                for r in self.by_tag.get(tag, self.generic):
                    found[r.index] = r
            hit = tuple(found[i] for i in sorted(found))
            if len(self.memo) < _MEMO_MAX:
                self.memo[key] = hit
        return hit


@dataclass(frozen=True, slots=True)
class PolicyTest:
    """One entry of the rules file's `tests:`: a request, who makes it, when, and what must
    happen."""

    line: int | None
    name: str
    url: str
    client: str
    at: datetime
    expect: Action
    user: str | None = None
    mac: str | None = None
    method: str = "GET"
    upload: bool = False
    rule: str | None = None
    basis: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """Everything the engine needs to decide, and what the proxy and CLI need to know about the
    policy."""

    version: str
    district: District
    fail_mode: FailMode
    default: Action
    ip_literals: IpLiteralHandling
    blocked_connections: BlockedConnections
    rules: tuple[CompiledRule, ...]
    index: DomainIndex
    ip_index: NetworkIndex
    group_networks: GroupNetworks
    group_users: Mapping[str, frozenset[str]]  # user → groups naming it directly
    group_parents: Mapping[str, frozenset[str]]  # group → itself and every group including it
    schedules: Mapping[str, Schedule]
    categories: Mapping[str, Category]
    devices: DeviceInventory
    overrides: OverrideLimits = OverrideLimits()
    logging: LoggingSettings = LoggingSettings()
    auth: AuthSettings = AuthSettings()
    source_files: tuple[Path, ...] = ()
    warnings: tuple[Problem, ...] = ()
    tests: tuple[PolicyTest, ...] = ()
    rules_by_id: Mapping[str, CompiledRule] = field(default_factory=dict)
    # ids of rules the district switched off (`enabled: false`)
    disabled_rules: tuple[str, ...] = ()
    # `uploads:` (policy/uploads.py): what counts as an upload
    uploads: UploadRules = field(default_factory=UploadRules)
    accounts: AccountsSpec | None = None  # `accounts:` (engine/accounts.py): sign-in restrictions
    # `identity:` (engine/identity.py): identity sources, group mapping, the unidentified
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    # `gateway_services:` (engine/gateway.py): the gateway's own services clients may reach
    gateway_services: tuple[GatewayService, ...] = ()
    # `services:` (engine/services.py): what each service needs to work, tagged in `index`
    services: ServiceCatalogue = field(default_factory=ServiceCatalogue)
    # `notifications:` (engine/notifications.py): who is told of requests, emergencies, reloads
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    roles: Roles = field(default_factory=Roles)  # `roles:` (engine/roles.py): who may grant what
    rule_index: RuleIndex = field(init=False)
    # host → (tags, candidate rules, True): a busy proxy asks about the same few thousand hosts all
    # day. Bounded (cleared when full); a plain dict is safe to share between threads (a racing
    # writer stores the same value, both computed from this immutable policy).
    _hosts: dict[str, HostRules] = field(default_factory=dict, compare=False, repr=False)
    # parent domain → (tags, candidate rules) of any name directly below it that is not listed
    # itself: a proxy meets endless new subdomains (`n123.cdn.example`) of a few parents, and
    # this answers them with one probe instead of a walk over every suffix. Bounded like _hosts.
    _below: dict[str, tuple[HostRules, HostRules]] = field(
        default_factory=dict, compare=False, repr=False
    )

    # decisions made without grants or emergencies, by (principal id, host, rule path); see
    # engine/decide.py. Bounded; read and written like _hosts.
    decisions: dict[tuple[object, ...], Decision] = field(
        default_factory=dict, compare=False, repr=False
    )

    # a host's tags (by id; the entry holds them) → the service they make it part of. A new
    # subdomain shares its parent's tags object (see _uncached_host_rules), so this costs no
    # entry per host.
    _owners: dict[int, tuple[Mapping[str, str], str | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule_index", RuleIndex.build(self.rules))

    def service_of(self, host: str) -> str | None:
        """The id of the service `host` (normalised) belongs to, or None: the per-host cache's
        tags, then one probe (decide() names it in every Decision it builds)."""
        if not self.services:
            return None
        tags = self.host_rules(host)[0]
        if not tags:
            return None
        hit = self._owners.get(id(tags))
        if hit is not None and hit[0] is tags:
            return hit[1]
        found = self.services.owner(tags)
        owners = self._owners
        if len(owners) >= _HOST_CACHE_MAX:
            owners.clear()
        owners[id(tags)] = (tags, found)
        return found

    def next_schedule_change(self, now: datetime) -> datetime | None:
        """The first instant after `now` at which a schedule some rule uses opens or closes.

        For callers that cache answers by time (e.g. a proxy re-checking long-lived connections):
        until then, no rule's `when` changes its answer.
        """
        used = {r.when.schedule.name: r.when.schedule for r in self.rules if r.when is not None}
        changes = [c for s in used.values() if (c := s.next_change(now)) is not None]
        return min(changes, default=None)

    def host_rules(self, host: str) -> HostRules:
        """The host's tags, the rules that may match it (in file order) each with what its
        destination says of the host (CompiledRule.tag_destination), and whether the host was
        seen before.

        Cached per host. The flag lets decide() skip its decision cache for a host met for the
        first time: nothing can be remembered for it, so probing and filling that cache would only
        cost time on the path a proxy takes for every new subdomain.
        """
        hit = self._hosts.get(host)
        if hit is not None:
            return hit
        later, first = self._uncached_host_rules(host)
        hosts = self._hosts
        if len(hosts) >= _HOST_CACHE_MAX:
            hosts.clear()
        hosts[host] = later
        return first

    def _uncached_host_rules(self, host: str) -> tuple[HostRules, HostRules]:
        """host_rules() for a host not in the per-host cache: (what later lookups get, what this
        first one gets).

        A name that is neither listed itself nor an approved page's host, nor an IP address, has
        exactly the tags of its parent domain, and then its candidate rules depend on those tags
        alone: so it is answered from the per-parent cache, whose tuples every such name shares
        (a new subdomain allocates nothing but its slot in the per-host cache, which also spares
        the garbage collector, since a proxy takes this path for every new host).
        """
        dot = host.find(".")
        if (
            dot < 0
            or host[-1:].isdigit()
            or ":" in host
            or host in self.index.listed
            or host in self.rule_index.by_url_host
        ):
            tags = self.classify(host)
            return _seen_and_first(tags, self.rule_index.candidates(host, tags))
        parent = host[dot + 1 :]
        below = self._below
        hit = below.get(parent)
        if hit is None:
            tags = self.index.lookup(parent)
            hit = _seen_and_first(tags, self.rule_index.candidates(host, tags))
            if len(below) >= _HOST_CACHE_MAX:
                below.clear()
            below[parent] = hit
        return hit

    def decides_on_path(self, host: str) -> bool:
        """Does some `urls:` rule name this (normalised) host? Then the request's path decides,
        and the proxy forwards the path normalised as it was decided (engine/paths.py)."""
        return host in self.rule_index.by_url_host

    @property
    def group_names(self) -> frozenset[str]:
        return frozenset(self.group_parents)

    @property
    def category_names(self) -> frozenset[str]:
        return frozenset(self.categories)

    @property
    def schedule_names(self) -> frozenset[str]:
        return frozenset(self.schedules)

    def classify(self, host: str) -> Mapping[str, str]:
        """The tags naming this (normalised) host: category:NAME / rule:ID → the domain or network
        matched."""
        # cheap pre-test first: names rarely end in a digit
        if (host[-1:].isdigit() or ":" in host) and is_ip_literal(host):
            return self.ip_index.lookup(host)
        return self.index.lookup(host)
