"""The grants and emergencies in force, as an immutable snapshot the engine decides against.

The proxy must never wait on the store, so the store hands it a snapshot (rebuilt in the
background) and the engine reads it without locks. Grants are indexed by their `who` key and
emergencies by their scope, so a lookup costs a few dict probes for the principal's own keys
whatever the number of active grants. Times are still checked on every lookup: a snapshot built at
10:00 must not honour a grant that ended at 10:00:01.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from .hosts import normalise_host
from .model import Emergency, Grant, Principal

__all__ = ["Overrides", "site_matches"]

CATEGORY_PREFIX = "category:"


def site_matches(site: str, host: str, tags: Mapping[str, str]) -> bool:
    """Does a grant/emergency site (`example.com` or `category:NAME`) cover this host?

    A domain covers itself and its subdomains (label boundaries only); a category covers the
    hosts the policy's index tagged with it (`tags` from DomainIndex.lookup).
    """
    if site.startswith(CATEGORY_PREFIX):
        return site in tags
    return host == site or host.endswith("." + site)


def _canonical_site(site: str) -> str:
    if site.startswith(CATEGORY_PREFIX):
        return site
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
    # each grant/emergency → its sites in canonical form (normalised once, not per request)
    _sites: Mapping[Grant | Emergency, tuple[str, ...]] = field(default_factory=dict)

    EMPTY: ClassVar[Overrides]

    @classmethod
    def build(cls, grants: Iterable[Grant], emergencies: Iterable[Emergency]) -> Overrides:
        by_who: dict[str, list[Grant]] = {}
        by_scope: dict[str, list[Emergency]] = {}
        sites: dict[Grant | Emergency, tuple[str, ...]] = {}
        for g in grants:
            by_who.setdefault(g.who, []).append(g)
            sites[g] = tuple(_canonical_site(s) for s in g.sites)
        for e in emergencies:
            by_scope.setdefault(e.scope, []).append(e)
            sites[e] = tuple(_canonical_site(s) for s in e.sites)
        return cls(
            {k: tuple(v) for k, v in by_who.items()},
            {k: tuple(v) for k, v in by_scope.items()},
            sites,
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
        if not self.emergencies:
            return None
        for scope in ("all", *principal.keys()):
            for e in self.emergencies.get(scope, ()):
                if (
                    e.starts <= now
                    and (e.ends is None or now < e.ends)
                    and self._covers(e, host, tags, empty_is_all=True)
                ):
                    return e
        return None

    def grant_for(
        self, principal: Principal, host: str, tags: Mapping[str, str], now: datetime
    ) -> Grant | None:
        """A grant in force now (start inclusive, end exclusive) for the principal and this host."""
        if not self.grants:
            return None
        for who in principal.keys():  # noqa: SIM118 - Principal.keys() is not a dict's
            for g in self.grants.get(who, ()):
                if g.starts <= now < g.ends and self._covers(g, host, tags, empty_is_all=False):
                    return g
        return None

    def _covers(
        self, override: Grant | Emergency, host: str, tags: Mapping[str, str], *, empty_is_all: bool
    ) -> bool:
        sites = self._sites.get(override, ())
        if not sites:
            return empty_is_all  # an emergency naming no site covers every site; a grant, none
        return any(site_matches(s, host, tags) for s in sites)


Overrides.EMPTY = Overrides()
