"""Services, not domains: Facebook is every domain Facebook needs to work.

A page at www.facebook.com takes its styles, scripts and images from static.xx.fbcdn.net,
scontent.xx.fbcdn.net and connect.facebook.net. An exception that opens only the domain that
matched opens a page that does not work, so grants, emergencies, records and reports speak
*services*: a named set of domains (page, assets/CDN, API, login, short links).

The catalogue is compiled with the policy: each service's domains go into the policy's domain
index under the tag `service:ID` (a domain may serve several services: Messenger needs Facebook's
CDN), so `tags` from the index already say which services a host belongs to. A host's *owner*,
the service a decision names, is the one whose matching domain is the most specific (ties: the
catalogue's order). Pure data and lookups; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "SERVICE_PREFIX",
    "SHARED_INFRASTRUCTURE",
    "Service",
    "ServiceCatalogue",
    "shared_infrastructure",
]

SERVICE_PREFIX = "service:"

# Domains that serve many unrelated sites (generic CDNs, cloud hosting, shared Google/Microsoft
# static hosts). None may belong to a service: an emergency for one site would open thousands,
# and a rule naming the service would break unrelated sites.
SHARED_INFRASTRUCTURE: frozenset[str] = frozenset(
    {
        "akamai.net",
        "akamaiedge.net",
        "akamaihd.net",
        "akamaized.net",
        "edgekey.net",
        "edgesuite.net",
        "cloudfront.net",
        "amazonaws.com",
        "awsstatic.com",
        "cloudflare.com",
        "cloudflare.net",
        "cdnjs.cloudflare.com",
        "fastly.net",
        "fastlylb.net",
        "azureedge.net",
        "azurefd.net",
        "windows.net",
        "msecnd.net",
        "googleusercontent.com",
        "googleapis.com",
        "gstatic.com",
        "googlevideo.com",
        "ggpht.com",
        "doubleclick.net",
        "googlesyndication.com",
        "appspot.com",
        "firebaseio.com",
        "jsdelivr.net",
        "unpkg.com",
        "cdn77.org",
        "llnwd.net",
        "edgecastcdn.net",
        "stackpathdns.com",
        "b-cdn.net",
        "github.io",
        "githubusercontent.com",
        "herokuapp.com",
        "vercel.app",
        "netlify.app",
        "wp.com",
        "wordpress.com",
        "blogspot.com",
    }
)


def shared_infrastructure(domain: str) -> str | None:
    """The shared-infrastructure domain `domain` is or lies under, if any."""
    name = domain
    while True:
        if name in SHARED_INFRASTRUCTURE:
            return name
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]


@dataclass(frozen=True, slots=True)
class Service:
    """One service: its id (`facebook`), the name people know (`Facebook`), and its domains."""

    id: str
    name: str
    domains: tuple[str, ...]

    @property
    def tag(self) -> str:
        return SERVICE_PREFIX + self.id


_HOST_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class ServiceCatalogue:
    """The policy's services by id, in catalogue order, and the owner of a host from its tags."""

    services: Mapping[str, Service] = field(default_factory=dict)
    # service tag → its position in the catalogue (ties between equally specific domains)
    _order: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, services: list[Service]) -> ServiceCatalogue:
        return cls({s.id: s for s in services}, {s.tag: i for i, s in enumerate(services)})

    def __len__(self) -> int:
        return len(self.services)

    def __bool__(self) -> bool:
        return bool(self.services)

    def get(self, service_id: str | None) -> Service | None:
        return self.services.get(service_id) if service_id else None

    def name_of(self, service_id: str | None) -> str | None:
        """The name people know (`Facebook`) for an id; the id itself if the catalogue lacks it."""
        if not service_id:
            return None
        s = self.services.get(service_id)
        return s.name if s is not None else service_id

    def owner(self, tags: Mapping[str, str]) -> str | None:
        """The id of the service a host with these tags belongs to: the most specific matching
        domain wins (scontent.cdninstagram.com is Instagram's even if a broader domain were
        another's), then the catalogue's order."""
        if not self._order:
            return None
        best: str | None = None
        best_key = (0, 0)
        order = self._order
        for tag, matched in tags.items():
            pos = order.get(tag)
            if pos is None:
                continue
            key = (matched.count(".") + 1, -pos)
            if best is None or key > best_key:
                best, best_key = tag, key
        return best[len(SERVICE_PREFIX) :] if best is not None else None

    def find(self, text: str) -> Service | None:
        """A service by id or by its name, ignoring case (`facebook`, `Facebook`, `X (Twitter)`)."""
        s = self.services.get(text)
        if s is not None:
            return s
        folded = text.strip().casefold()
        for s in self.services.values():
            if s.id.casefold() == folded or s.name.casefold() == folded:
                return s
        return None
