"""The grants and emergencies in force, as an immutable snapshot the engine decides against.

The proxy must never wait on the store, so the store hands it a snapshot (rebuilt in the
background) and the engine reads it without locks. Grants are indexed by their `who` key and
emergencies by their scope, so a lookup costs a few dict probes for the principal's own keys
whatever the number of active grants. Times are still checked on every lookup: a snapshot built at
10:00 must not honour a grant that ended at 10:00:01.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import ClassVar

from .hosts import normalise_host
from .model import Decision, Emergency, Grant, Principal

__all__ = ["DOMAIN_ONLY_PREFIX", "Overrides", "ServiceOf", "site_matches"]

CATEGORY_PREFIX = "category:"
SERVICE_PREFIX = "service:"
# `domain:www.facebook.com`: that domain (and its subdomains) alone, not its whole service
DOMAIN_ONLY_PREFIX = "domain:"
# the policy's host → service id (CompiledPolicy.service_of), for widening a domain to its service
ServiceOf = Callable[[str], str | None]
_MEMO_MAX = 50_000  # principals remembered per snapshot (a snapshot lives until the next change)


def site_matches(
    site: str, host: str, tags: Mapping[str, str], service_of: ServiceOf | None = None
) -> bool:
    """Does a grant/emergency site (`example.com`, `category:NAME`, `service:ID`,
    `domain:example.com` or a network) cover this host?

    A category or a service covers the hosts the policy's index tagged with it (`tags` from
    DomainIndex.lookup). A domain covers itself and its subdomains (label boundaries only) and,
    given `service_of`, every host of the service it belongs to: an exception for
    www.facebook.com must open the CDN its page loads from, or the page does not work. A
    `domain:` site is that domain alone (a domain-only grant, when an administrator asks for one).
    A network (`203.0.113.0/24`, what a block by a category's `networks:` names as its match)
    covers the addresses in it.
    """
    if site.startswith((CATEGORY_PREFIX, SERVICE_PREFIX)):
        return site in tags
    if "/" in site:
        return _in_network(site, host)
    if site.startswith(DOMAIN_ONLY_PREFIX):
        site = site[len(DOMAIN_ONLY_PREFIX) :]
        return host == site or host.endswith("." + site)
    if host == site or host.endswith("." + site):
        return True
    if service_of is None:
        return False
    service = service_of(site)
    return service is not None and SERVICE_PREFIX + service in tags


@lru_cache(maxsize=65536)
def _in_network(site: str, host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(site, strict=False)
    except ValueError:
        return False


@lru_cache(maxsize=65536)
def _canonical_site(site: str) -> str:
    if site.startswith((CATEGORY_PREFIX, SERVICE_PREFIX)):
        return site
    if "/" in site:
        try:
            return str(ipaddress.ip_network(site.strip(), strict=False))
        except ValueError:
            return site.strip().lower()
    if site.startswith(DOMAIN_ONLY_PREFIX):
        return DOMAIN_ONLY_PREFIX + _canonical_site(site[len(DOMAIN_ONLY_PREFIX) :])
    try:
        return normalise_host(site)
    except ValueError:
        return site.strip().lower()


@dataclass(frozen=True, slots=True)
class Overrides:
    """Grants by `who` key, emergencies by scope; build with Overrides.build(grants,
    emergencies)."""

    grants: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)
    emergencies: Mapping[str, tuple[Emergency, ...]] = field(default_factory=dict)
    # each grant/emergency (by id(), which the snapshot keeps alive) → its sites in canonical form
    # (normalised once, not per request; id() because hashing a Grant per lookup costs microseconds)
    _sites: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    # the same grants and emergencies by kind, then name ("user" → "jdoe" → ...), so a lookup
    # probes the principal's own attributes without formatting its "kind:name" keys per request
    _grants_by_kind: Mapping[str, Mapping[str, tuple[Grant, ...]]] = field(default_factory=dict)
    _emergencies_by_kind: Mapping[str, Mapping[str, tuple[Emergency, ...]]] = field(
        default_factory=dict
    )
    # principal (by id; the entry holds the principal, so the id stays its own) → the emergencies
    # and grants filed under its keys. The proxy reuses one Principal per client, so a request
    # costs one probe here instead of a probe per key (and a sort of its groups) per lookup.
    _memo: dict[int, tuple[Principal, tuple[Emergency, ...], tuple[Grant, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # decisions this snapshot's grants and emergencies lifted, remembered by engine/decide.py
    # (the key names the policy, principal, host, override and rule path by id; the entry holds
    # the policy and principal, so those ids stay theirs, and the snapshot holds the overrides)
    lifted: dict[tuple[object, ...], tuple[object, Principal, Decision]] = field(
        default_factory=dict, compare=False, repr=False
    )

    EMPTY: ClassVar[Overrides]

    @classmethod
    def build(cls, grants: Iterable[Grant], emergencies: Iterable[Emergency]) -> Overrides:
        by_who: dict[str, list[Grant]] = {}
        by_scope: dict[str, list[Emergency]] = {}
        sites: dict[int, tuple[str, ...]] = {}
        for g in grants:
            by_who.setdefault(g.who, []).append(g)
            sites[id(g)] = tuple(_canonical_site(s) for s in g.sites)
        for e in emergencies:
            by_scope.setdefault(e.scope, []).append(e)
            sites[id(e)] = tuple(_canonical_site(s) for s in e.sites)
        grants_by_who = {k: tuple(v) for k, v in by_who.items()}
        emergencies_by_scope = {k: tuple(v) for k, v in by_scope.items()}
        return cls(
            grants_by_who,
            emergencies_by_scope,
            sites,
            _by_kind(grants_by_who),
            _by_kind(emergencies_by_scope),
        )

    def __bool__(self) -> bool:
        return bool(self.grants or self.emergencies)

    @property
    def grant_count(self) -> int:
        return sum(len(v) for v in self.grants.values())

    @property
    def emergency_count(self) -> int:
        return sum(len(v) for v in self.emergencies.values())

    def emergency_for(
        self, principal: Principal, host: str, tags: Mapping[str, str], now: datetime
    ) -> Emergency | None:
        """An emergency in force now whose scope covers the principal and whose sites cover the
        host."""
        found = self.lifting(principal, host, tags, now, emergency=True, grant=False)
        return found if isinstance(found, Emergency) else None

    def grant_for(
        self, principal: Principal, host: str, tags: Mapping[str, str], now: datetime
    ) -> Grant | None:
        """A grant in force now (start inclusive, end exclusive) for the principal and this host."""
        found = self.lifting(principal, host, tags, now, emergency=False, grant=True)
        return found if isinstance(found, Grant) else None

    def lifting(
        self,
        principal: Principal,
        host: str,
        tags: Mapping[str, str],
        now: datetime,
        *,
        emergency: bool,
        grant: bool,
        service_of: ServiceOf | None = None,
    ) -> Emergency | Grant | None:
        """What lifts a block for this principal and host now: an emergency first (if `emergency`),
        else a grant (if `grant`). One call and one memo probe for both, on the hot path.
        With `service_of`, a domain named by a grant or emergency stands for its whole service
        (see site_matches)."""
        hit = self._memo.get(id(principal))
        if hit is None or hit[0] is not principal:
            if not (self.grants or self.emergencies):
                return None
            hit = self._file(principal)
        if emergency:
            for e in hit[1]:
                if (
                    e.starts <= now
                    and (e.ends is None or now < e.ends)
                    and self._covers(e, host, tags, service_of, empty_is_all=True)
                ):
                    return e
        if grant:
            for g in hit[2]:
                if g.starts <= now < g.ends and self._covers(
                    g, host, tags, service_of, empty_is_all=False
                ):
                    return g
        return None

    def _file(
        self, principal: Principal
    ) -> tuple[Principal, tuple[Emergency, ...], tuple[Grant, ...]]:
        """The emergencies (district-wide first) and grants filed under the principal's keys, in
        Principal.keys() order; worked out once per principal and snapshot, then remembered."""
        emergencies = tuple(
            e
            for found in (
                self.emergencies.get("all", ()),
                *_matches(self._emergencies_by_kind, principal),
            )
            for e in found
        )
        grants = tuple(g for found in _matches(self._grants_by_kind, principal) for g in found)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        entry = (principal, emergencies, grants)
        self._memo[id(principal)] = entry
        return entry

    def _covers(
        self,
        override: Grant | Emergency,
        host: str,
        tags: Mapping[str, str],
        service_of: ServiceOf | None,
        *,
        empty_is_all: bool,
    ) -> bool:
        sites = self._sites.get(id(override), ())
        if not sites:
            return empty_is_all  # an emergency naming no site covers every site; a grant, none
        return any(site_matches(s, host, tags, service_of) for s in sites)


def _by_kind[T](by_key: Mapping[str, tuple[T, ...]]) -> dict[str, dict[str, tuple[T, ...]]]:
    """{"user:jdoe": ...} → {"user": {"jdoe": ...}}."""
    out: dict[str, dict[str, tuple[T, ...]]] = {}
    for key, items in by_key.items():
        kind, _, name = key.partition(":")
        out.setdefault(kind, {})[name] = items
    return out


def _matches[T](
    by_kind: Mapping[str, Mapping[str, tuple[T, ...]]], principal: Principal
) -> list[tuple[T, ...]]:
    """What is filed under the principal's keys, in Principal.keys() order (ip, user, device,
    groups): a few dict probes, no strings built. An address's overrides do not apply to a person
    an identity source names (`principal.source`): they were given to whoever held the address
    then, and a reassigned address must not carry them to the next holder."""
    out: list[tuple[T, ...]] = []
    if not by_kind:
        return out
    if (
        principal.source is None
        and (m := by_kind.get("ip"))
        and (hit := m.get(principal.client_ip))
    ):
        out.append(hit)
    if principal.user and (m := by_kind.get("user")) and (hit := m.get(principal.user)):
        out.append(hit)
    if principal.device and (m := by_kind.get("device")) and (hit := m.get(principal.device)):
        out.append(hit)
    if principal.groups and (m := by_kind.get("group")):
        for g in sorted(principal.groups) if len(principal.groups) > 1 else principal.groups:
            if hit := m.get(g):
                out.append(hit)
    return out


Overrides.EMPTY = Overrides()
