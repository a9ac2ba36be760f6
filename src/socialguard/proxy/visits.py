"""Visits: which requests are a person opening a page, as opposed to what the page then loads.

One page load is dozens of requests (styles, scripts, images, polls), and a polling tab makes
hundreds an hour; people and reports think in pages opened. A *visit* is a page navigation, a
document request: `Sec-Fetch-Mode: navigate` or a document `Sec-Fetch-Dest` (what every current
browser sends), or, from an older client that sends no Fetch Metadata, an `Accept` naming
text/html. The decision record carries `visit: true` for it; reports count visits per service and
per person with requests as the secondary figure.
"""

from __future__ import annotations

from mitmproxy.http import Headers

__all__ = ["is_visit"]


def _first(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    return values[0].strip().lower() if values else None


def is_visit(headers: Headers) -> bool:
    """True for a page navigation."""
    mode = _first(headers, "sec-fetch-mode")
    dest = _first(headers, "sec-fetch-dest")
    if dest is not None:  # an iframe inside a page, an image, a fetch(): not a visit
        return dest == "document" and mode in (None, "navigate")
    if mode is not None:
        return mode == "navigate"
    return any("text/html" in a.lower() for a in headers.get_all("accept"))
