"""DNS-over-HTTPS recognised by the form of the request, for `doh: true` rules.

A resolver the lists do not name is still found by how DoH is asked: RFC 8484 (the `dns-query`
endpoint, a `dns` parameter carrying a base64url DNS message, the `application/dns-message` media
type) and the JSON form resolvers also serve (`/resolve?name=…`, `application/dns-json`). Every
spelling a server accepts counts: names in any case, percent-encoded, parameters after `&` or `;`
(in the query or on a path segment), the media type in Content-Type or in Accept, with the older
drafts' `dns-udpwireformat`. What only looks alike stays allowed: a `dns` parameter that is not a
DNS message (`?dns=8.8.8.8`), a `name` parameter on any other path.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote

from .model import Request

__all__ = ["is_doh_request"]

_DNS_HEADER = 12  # bytes: a DNS message is at least its header
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{16,}={0,2}")
# a domain name as JSON DoH asks about it (at least one dot: `example.com`, `com.`)
_DOMAIN = re.compile(r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_-]*)+")
_ENDPOINTS = frozenset({"dns-query", "dns-json", "resolve"})


def is_doh_request(request: Request) -> bool:
    """Is this request a DNS-over-HTTPS query, in any spelling? (see the module docstring)"""
    if _dns_media(request.content_type) or _accepts_dns(request.accept):
        return True
    target = request.path or "/"
    lowered = target.lower()
    if "dns" not in lowered and "%" not in target and "resolve" not in lowered:
        return False  # nearly every request: nothing DoH could be spelt with
    path, _, query = target.partition("?")
    segments = [unquote(s) for s in path.split("/")]
    names = [s.partition(";")[0].lower() for s in segments]
    if "dns-query" in names:
        return True
    params = _parameters(query, segments)
    if any(_is_dns_message(value) for key, value in params if key == "dns"):
        return True
    json_endpoint = bool(names) and names[-1] in _ENDPOINTS
    return json_endpoint and any(key == "name" and _DOMAIN.fullmatch(v) for key, v in params)


def _dns_media(value: str | None) -> bool:
    """application/dns-message, dns-json, dns-udpwireformat, x-dns-…: any case, any parameters."""
    if not value:
        return False
    kind, _, subtype = value.partition(";")[0].strip().lower().partition("/")
    return kind == "application" and subtype.removeprefix("x-").startswith("dns")


def _accepts_dns(value: str | None) -> bool:
    """Does an Accept header ask for a DNS media type (among others, with any q)?"""
    if not value or "dns" not in value.lower():
        return False
    return any(map(_dns_media, value.split(",")))


def _parameters(query: str, segments: list[str]) -> list[tuple[str, str]]:
    """(name, value) of every parameter: the query's, split on & and ;, and the path segments'
    `;name=value` ones; names decoded and lower-cased, values decoded."""
    parts = re.split(r"[&;]", query) if query else []
    for segment in segments:
        parts.extend(segment.split(";")[1:])
    out = []
    for part in parts:
        key, _, value = part.partition("=")
        out.append((unquote(key.replace("+", " ")).strip().lower(), unquote(value)))
    return out


def _is_dns_message(value: str) -> bool:
    """A base64url value that decodes to at least a DNS header (RFC 8484 §4.1)."""
    if not _BASE64URL.fullmatch(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= _DNS_HEADER
