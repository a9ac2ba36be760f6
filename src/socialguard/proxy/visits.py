"""Visits: which requests are a person opening a page, as opposed to what the page then loads.

One page load is dozens of requests (styles, scripts, images, polls), and a polling tab makes
hundreds an hour; people and reports think in pages opened. A *visit* is a page navigation, a
document request: `Sec-Fetch-Mode: navigate` or a document `Sec-Fetch-Dest` (what every current
browser sends), or, from an older client that sends no Fetch Metadata, an `Accept` naming
text/html. The decision record carries `visit: true` for it; reports count visits per service and
per person with requests as the secondary figure.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["is_visit"]


def _first(head: Mapping[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = head.get(name)
    return values[0].strip().lower() if values else None


def is_visit(head: Mapping[bytes, list[bytes]]) -> bool:
    """True for a page navigation. `head` is the request's header fields by lower-cased name."""
    mode = _first(head, b"sec-fetch-mode")
    dest = _first(head, b"sec-fetch-dest")
    if dest is not None:  # an iframe inside a page, an image, a fetch(): not a visit
        return dest == b"document" and mode in (None, b"navigate")
    if mode is not None:
        return mode == b"navigate"
    return any(b"text/html" in a.lower() for a in head.get(b"accept", ()))
