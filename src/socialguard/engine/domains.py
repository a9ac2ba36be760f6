"""Which categories and rules name a host: a suffix lookup whose cost does not grow with the lists.

A listed domain matches itself and every subdomain, on label boundaries only: `facebook.com`
matches `m.facebook.com` but not `notfacebook.com` nor `facebook.com.evil.example`. The index is
one dict from domain to the set of *tags* naming it (`category:social`, `rule:approved-pages`).
A lookup walks the host's suffixes (`a.b.example`, `b.example`, `example`), one dict probe per
label, so a host costs the same against ten domains or ten million.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DomainIndex", "DomainIndexBuilder", "NetworkIndex"]

_NO_MATCHES: Mapping[str, str] = {}


class DomainIndex:
    """Immutable domain → tags index; `lookup(host)` gives each tag and the domain that matched."""

    __slots__ = ("_map", "listed")

    def __init__(self, mapping: dict[str, frozenset[str]]) -> None:
        self._map = mapping
        # read-only view of the same dict, for `name in index.listed` on hot paths: one C-level
        # probe, without the Python call `name in index` costs
        self.listed: Mapping[str, frozenset[str]] = mapping

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, domain: object) -> bool:
        return domain in self._map

    def lookup(self, host: str) -> Mapping[str, str]:
        """Tags naming `host` or a parent domain of it, each with its most specific matching
        domain."""
        get = self._map.get
        out: dict[str, str] | None = None
        name = host
        while True:
            tags = get(name)
            if tags is not None:
                if out is None:
                    out = dict.fromkeys(tags, name)
                else:
                    for tag in tags:
                        if tag not in out:
                            out[tag] = name
            i = name.find(".")
            if i < 0:
                break
            name = name[i + 1 :]
        return out if out is not None else _NO_MATCHES

    def items(self) -> Iterable[tuple[str, frozenset[str]]]:
        """Every listed domain with its tags; for exporters (dnsmasq sets), never the hot path."""
        return self._map.items()

    def tags_of(self, domain: str) -> frozenset[str]:
        """The tags listing exactly `domain` (not its parents)."""
        return self._map.get(domain, frozenset())


class DomainIndexBuilder:
    """Collects (domains, tag) pairs and merges them into one dict, sharing the tag sets.

    At a million domains the merge order matters: the largest list becomes the dict in one
    `dict.fromkeys` call (C speed, one shared frozenset as every value), and only the smaller lists
    are merged entry by entry. One shared frozenset per distinct tag combination keeps the memory
    to the dict itself plus the domain strings.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[list[str], str]] = []

    def add(self, domains: list[str], tag: str) -> None:
        if domains:
            self._parts.append((domains, tag))

    def build(self) -> DomainIndex:
        sets: dict[frozenset[str], frozenset[str]] = {}
        parts = sorted(self._parts, key=lambda p: len(p[0]), reverse=True)
        if not parts:
            return DomainIndex({})
        first, first_tag = parts[0]
        single = frozenset((first_tag,))
        sets[single] = single
        m: dict[str, frozenset[str]] = dict.fromkeys(first, single)
        for domains, tag in parts[1:]:
            one = sets.setdefault(frozenset((tag,)), frozenset((tag,)))
            for domain in domains:
                have = m.get(domain)
                if have is None:
                    m[domain] = one
                elif tag not in have:
                    union = have | one
                    m[domain] = sets.setdefault(union, union)
        return DomainIndex(m)


@dataclass(frozen=True, slots=True)
class NetworkIndex:
    """CIDR → tags for IP-literal destinations (few entries: a linear scan is the right tool)."""

    entries: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = ()

    def lookup(self, host: str) -> Mapping[str, str]:
        if not self.entries:
            return _NO_MATCHES
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return _NO_MATCHES
        out: dict[str, str] = {}
        for network, tag in self.entries:
            if addr.version == network.version and addr in network and tag not in out:
                out[tag] = str(network)
        return out
