"""Text from the network, made safe to show to a person: one place, used by every human output.

A Host header, a form's reason or a URL is chosen by whoever sent the request, and it reaches an
administrator's terminal (`audit tail`, `emergency review`, ...) and the district's spreadsheet
(`audit search --csv`). There, an escape sequence can retitle or clear the terminal or make it
answer, a CR can overwrite the start of a line (forging a record), a bidi override reverses what
is read, and a cell starting with `=` is a formula. So every command that prints for a person
passes each value through `printable()` (and cells through `csv_cell()`): control characters
(C0, DEL, C1), Unicode format characters (bidi embeddings, overrides and isolates, zero-width
characters) and line and paragraph separators are shown as visible escapes (`\\x1b`, `\\u202e`),
never passed on. The records themselves keep what was sent, JSON-escaped: they are the evidence.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["ELLIPSIS", "clip", "csv_cell", "json_line", "printable"]

ELLIPSIS = "…"

# Unicode categories shown escaped: controls, format characters (bidi, zero-width), surrogates
# (from undecodable bytes), line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ASCII_UNSAFE = re.compile("[\x00-\x1f\x7f]")
# A spreadsheet reads a cell starting with one of these as a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# In UTF-8 JSON text (a stored record): C1 controls, bidi marks, embeddings, overrides and
# isolates, zero-width and invisible characters, line and paragraph separators, the BOM. JSON
# escapes C0 controls itself; these it leaves raw, and a terminal may obey or reorder them.
_JSON_UNSAFE = re.compile(
    rb"\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8b-\x8f\xa8-\xae]|\xe2\x81[\xa0-\xaf]|\xef\xbb\xbf"
)


def _json_escape(m: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(m.group().decode("utf-8"))


def json_line(raw: bytes) -> bytes:
    """A stored JSON line with the characters above written as `\\uXXXX` escapes: the same JSON
    value, but nothing a terminal acts on. (They can only occur inside JSON strings.)"""
    return _JSON_UNSAFE.sub(_json_escape, raw)


@functools.lru_cache(maxsize=4096)
def _shown(char: str) -> str:
    """One character as shown: itself, or its visible escape."""
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape_match(m: re.Match[str]) -> str:
    return _shown(m.group())


def printable(text: str) -> str:
    """`text` with every control, format (bidi, zero-width) and separator character escaped.

    Idempotent (what it returns is printable), and quick for the common case: plain ASCII without
    controls is returned as it is, so a search over millions of records pays one scan a value.
    """
    if text.isascii():
        return _ASCII_UNSAFE.sub(_escape_match, text) if _ASCII_UNSAFE.search(text) else text
    return "".join(map(_shown, text))


def clip(text: str, width: int) -> str:
    """`printable(text)` in at most `width` characters, cut between whole characters (never
    inside an escape), with an ellipsis when cut. Runs of whitespace become one space."""
    pieces = [_shown(c) for c in " ".join(text.split())]
    if sum(map(len, pieces)) <= width:
        return "".join(pieces)
    out: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > width - len(ELLIPSIS):
            break
        out.append(piece)
        used += len(piece)
    return "".join(out) + ELLIPSIS


def csv_cell(text: str) -> str:
    """A value for a CSV cell a spreadsheet will open: printable, and never a formula (a leading
    `=`, `+`, `-`, `@`, tab or CR gets a `'` before it, which spreadsheets show as text)."""
    shown = printable(text)
    return "'" + shown if text.startswith(_FORMULA_START) else shown
