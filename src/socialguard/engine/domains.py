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

    __slots__ = ("_map",)

    def __init__(self, mapping: dict[str, frozenset[str]]) -> None:
        self._map = mapping

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, domain: object) -> bool:
        return domain in self._map

    def lookup(self, host: str) -> Mapping[str, str]:
        """Tags naming `host` or a parent domain of it, each with its most specific matching domain."""
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

    def tags_of(self, domain: str) -> frozenset[str]:
        """The tags listing exactly `domain` (not its parents)."""
        return self._map.get(domain, frozenset())


class DomainIndexBuilder:
    """Collects (domains, tag) pairs, sharing one frozenset per distinct tag combination.

    Sharing matters at a million domains: most entries carry a single tag, and one shared set
    object per combination keeps the index to the dict itself plus the domain strings.
    """

    def __init__(self) -> None:
        self._map: dict[str, frozenset[str]] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}

    def _shared(self, tags: frozenset[str]) -> frozenset[str]:
        return self._sets.setdefault(tags, tags)

    def add(self, domains: Iterable[str], tag: str) -> None:
        single = self._shared(frozenset((tag,)))
        m = self._map
        if not m:
            m.update(dict.fromkeys(domains, single))
            return
        for domain in domains:
            have = m.get(domain)
            if have is None:
                m[domain] = single
            elif tag not in have:
                m[domain] = self._shared(have | single)

    def build(self) -> DomainIndex:
        return DomainIndex(self._map)


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
