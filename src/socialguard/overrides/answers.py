"""What staff learn on the block page about their own access request: pending, approved, denied.

The proxy must not query the store while it answers a request, so the latest answer per person and
site travels with the overrides snapshot (`SnapshotRefresher.answers`), rebuilt off the event loop
whenever the store changes. Keys are what the block page's form files: the person key
(`engine.limits.person_key`: user, else device, else address) and the blocked site; so a page only
ever shows the requester their own request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["ANSWERS_KEPT_FOR", "RequestAnswer", "RequestAnswers"]

# How long a request's answer is still shown on the block page after it was filed.
ANSWERS_KEPT_FOR = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class RequestAnswer:
    """One access request as its requester may see it."""

    id: str
    who: str
    site: str
    status: str  # pending | approved | denied
    filed: datetime
    decided_at: datetime | None = None
    note: str | None = None  # denied: the reason the administrator gave
    ends: datetime | None = None  # approved: when the grant it made ends
    revoked: bool = False  # approved, but the grant was revoked since


@dataclass(frozen=True, slots=True)
class RequestAnswers:
    """The latest request per (person key, site); immutable, swapped whole."""

    by_key: Mapping[tuple[str, str], RequestAnswer] = field(default_factory=dict)

    @classmethod
    def build(cls, answers: Iterable[RequestAnswer]) -> RequestAnswers:
        """`answers` in the order they were filed (the store's order): of two filed at the same
        instant — a clock that does not move between them — the one filed later wins, never the
        one whose random id sorts higher."""
        latest: dict[tuple[str, str], RequestAnswer] = {}
        for a in answers:
            key = (a.who, a.site)
            seen = latest.get(key)
            if seen is None or a.filed >= seen.filed:
                latest[key] = a
        return cls(latest)

    def latest(self, who: str, site: str) -> RequestAnswer | None:
        return self.by_key.get((who, site))
