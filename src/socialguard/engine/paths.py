"""Request paths as an origin reads them, for `urls:` rules (approved and blocked pages).

A `urls:` rule is a promise about pages, and a page is what the origin serves, not the bytes of
the request target: `/Page/../private/`, `/Page/%2e%2e/private/`, `/Page//x`, `/Page\\x` and
`/%50age/` all name other pages than they seem to on a server that normalises (RFC 3986 §6.2.2:
unreserved escapes decoded, escape hex in upper case, dot segments removed; most servers also fold
duplicate slashes and read a backslash as a slash). So on a host some `urls:` rule names, the
engine matches the *normalised* path, and the proxy forwards that very path: the origin receives
what was decided, whatever it would have made of the original.

Some spellings have no single reading: an escaped slash or backslash (`..%2f` is a dot segment to
a server that decodes before splitting, a name to one that does not), a dot segment carrying
`;parameters` (`..;` is `..` to Tomcat), an escaped percent sign before hex (`%252e` is `.` to a
server that decodes twice), a stray `%`, a NUL, a fragment. Forwarding any one reading would not
stop an origin from taking another, so such a path is refused (`AmbiguousPath`) on those hosts.
Browsers never send them: they normalise paths themselves. `;parameters` on an ordinary segment
are kept, and a rule matches the path both with and without them (see `readings`).

Hosts no `urls:` rule names are not touched: their answer does not depend on the path.
"""

from __future__ import annotations

import functools
import re

__all__ = ["AmbiguousPath", "readings", "request_target"]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
# escapes whose decoded byte separates segments, ends the path, or is itself an escape
_NO_SINGLE_READING = {
    0x2F: "an escaped slash (%2F)",
    0x5C: "an escaped backslash (%5C)",
    0x00: "an escaped NUL (%00)",
}
# what never needs the slow path: no escape, backslash, dot segment, double slash, parameter
# (segments cannot end on a dot, so the pattern has one way to match: linear time)
_SEGMENT = r"[A-Za-z0-9_\-~!$&'()*+,=:@]+(?:\.[A-Za-z0-9_\-~!$&'()*+,=:@]+)*"
_PLAIN = re.compile(rf"(?:/{_SEGMENT})*/?")
_MAX_CACHED = 4096


class AmbiguousPath(ValueError):
    """A path servers read in different ways; the message says which part and why."""


@functools.lru_cache(maxsize=_MAX_CACHED)
def request_target(target: str) -> str:
    """The request target (path and query) with its path normalised; raises AmbiguousPath.

    The query is kept as sent: pages are named by paths, and a query's escapes mean what the
    page makes of them.
    """
    path, mark, query = target.partition("?")
    if _PLAIN.fullmatch(path):
        return target
    if target == "*":
        return target  # OPTIONS *: names no page
    if not path.startswith(("/", "\\")):
        raise AmbiguousPath(f"the path {_shown(path)} does not start with /")
    if "#" in path:
        raise AmbiguousPath("the path carries a fragment (#)")
    decoded = _decode_unreserved(path.replace("\\", "/").encode("utf-8", "surrogateescape"))
    return _remove_dot_segments(decoded) + mark + query


def readings(path: str) -> tuple[str, ...]:
    """The ways an origin may read a normalised path: as it is, and, where a segment carries
    `;parameters`, without them (as Java servers do). A page covers the path only if it covers
    every reading; a blocked page is reached if any reading reaches it."""
    if ";" not in path:
        return (path,)
    base, mark, query = path.partition("?")
    bare = "/".join(segment.partition(";")[0] for segment in base.split("/"))
    return (path, bare + mark + query)


def _decode_unreserved(raw: bytes) -> str:
    """Escapes of unreserved characters decoded, others in upper case; bytes outside printable
    ASCII escaped (as a browser sends them)."""
    out = []
    i, n = 0, len(raw)
    while i < n:
        byte = raw[i]
        if byte == 0x25:  # %
            if i + 2 >= n or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise AmbiguousPath("the path carries a % that starts no escape")
            value = int(raw[i + 1 : i + 3], 16)
            if value in _NO_SINGLE_READING:
                raise AmbiguousPath(f"the path carries {_NO_SINGLE_READING[value]}")
            if value == 0x25 and i + 4 < n and raw[i + 3] in _HEX and raw[i + 4] in _HEX:
                raise AmbiguousPath("the path carries an escaped escape (%25 before hex digits)")
            out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
            i += 3
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
            i += 1
        else:
            out.append(f"%{byte:02X}")
            i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on a path starting with /, with empty segments folded as servers fold
    duplicate slashes; a dot segment with `;parameters` has no single reading."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    slash_after = False
    for segment in segments:
        name = segment.partition(";")[0]
        if name in (".", "..") and name != segment:
            raise AmbiguousPath(f"the path carries a dot segment with parameters ({segment})")
        if segment == "..":
            if kept:
                kept.pop()
            slash_after = True
        elif segment in (".", ""):
            slash_after = True
        else:
            kept.append(segment)
            slash_after = False
    if not kept:
        return "/"
    return "/" + "/".join(kept) + ("/" if slash_after else "")


def _shown(text: str) -> str:
    return repr(text[:40] + ("…" if len(text) > 40 else ""))
