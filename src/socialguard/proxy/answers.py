"""The headers on every answer the proxy makes itself: block pages, form answers, 407, errors.

The block page carries the emergency button; framed by another site it could be pressed by a
person who never meant to (clickjacking). So nothing the proxy answers may be framed, sniffed into
another type, cached, or tell another site where the person came from. The policy allows what the
pages use and nothing else: their inline `<style>`, images only as data: URLs (none today), and
forms that post back to the same origin (the block page's own `/.socialguard/` paths).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "guarded"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
        "X-Content-Type-Options": "nosniff",
        # not no-referrer: with it Chromium sends `Origin: null` on the block page's own form
        # posts, which the forms refuse as cross-site; same-origin tells other sites nothing
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
)


def guarded(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` with the security headers set (theirs win over any given)."""
    return {**headers, **SECURITY_HEADERS}
