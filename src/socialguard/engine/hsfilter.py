"""A Hyperscan prefilter for upload markers: "could this pattern match this text?" at GB/s.

Python's `re` scans a marker like `CONFIDENTIAL` (ignore case) or `\\bS\\d{7}\\b` at ~1 ns a byte
or worse, and a 10 MB text body full of the letters those markers start with (ordinary prose)
must be searched in full; that cost a third to a half again of the proxy's own time for such an
upload. Hyperscan answers the same question for a whole chunk in a fraction of that. It is used
only as a prefilter, never as the judge: compiled in its prefilter mode (it matches a superset of
the pattern), it may say "maybe" where `re` finds nothing, but never "no" where `re` finds a
match; a "maybe" is then decided by `re` as before. So the answers are `re`'s, exactly.

To keep "never no where `re` says yes" a property of this code rather than of two regex dialects
agreeing, the pattern is not handed to Hyperscan as written: it is parsed by Python's own parser
and re-emitted from that parse, construct by construct, in a subset whose meaning is the same in
both (literals, classes, `.`, repeats, groups, alternation, `^ $ \\A \\Z \\b \\B`). Anything else
(back-references, look-arounds, inline flags other than `i`, ...) gets no prefilter and is searched
by `re` alone. Hyperscan is optional: where it is not installed (it ships wheels for x86-64 Linux)
or does not run on the CPU, every marker is searched by `re` alone, with the same answers.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Sequence
from re import _constants as _c  # type: ignore[attr-defined]
from re import _parser as _p  # type: ignore[attr-defined]
from typing import Any

_hs: Any
try:  # optional: a native library with wheels for x86-64 Linux only
    _hs = importlib.import_module("hyperscan")
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _hs = None

__all__ = ["available", "prefilter", "translate"]

_CATEGORIES = {
    _c.CATEGORY_DIGIT: rb"\d",
    _c.CATEGORY_NOT_DIGIT: rb"\D",
    _c.CATEGORY_WORD: rb"\w",
    _c.CATEGORY_NOT_WORD: rb"\W",
    _c.CATEGORY_SPACE: rb"\s",
    _c.CATEGORY_NOT_SPACE: rb"\S",
}
_ANCHORS = {
    _c.AT_BEGINNING: rb"^",
    _c.AT_BEGINNING_STRING: rb"\A",
    _c.AT_END: rb"$",
    _c.AT_END_STRING: rb"\z",  # Python's \Z is the very end: PCRE's \z
    _c.AT_BOUNDARY: rb"\b",
    _c.AT_NON_BOUNDARY: rb"\B",
}


class _Unsupported(Exception):
    """A construct outside the subset both dialects read alike."""


def available() -> bool:
    """Whether Hyperscan is installed and runs on this CPU."""
    return prefilter(re.compile(b"a")) is not None


def translate(pattern: re.Pattern[bytes]) -> tuple[bytes, bool] | None:
    """(Hyperscan expression, caseless) with the pattern's meaning, or None when outside the
    subset (see the module's docstring)."""
    if not isinstance(pattern.pattern, bytes):
        return None
    try:
        parsed = _p.parse(pattern.pattern, pattern.flags)
    except re.error:
        return None
    flags = parsed.state.flags  # the pattern's flags with its leading inline ones, e.g. (?i)
    if flags & ~re.IGNORECASE:
        return None
    try:
        return _emit(parsed), bool(flags & re.IGNORECASE)
    except _Unsupported:
        return None


def _emit(items: Any) -> bytes:
    return b"".join(_node(op, av) for op, av in items)


def _node(op: Any, av: Any) -> bytes:
    if op is _c.LITERAL:
        return _byte(av)
    if op is _c.NOT_LITERAL:
        return b"[^" + _byte(av) + b"]"
    if op is _c.ANY:
        return b"."
    if op is _c.IN:
        return _class(av)
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
        low, high, sub = av
        top = b"" if high is _c.MAXREPEAT else str(high).encode()
        return b"(?:" + _emit(sub) + b"){" + str(low).encode() + b"," + top + b"}"
    if op is _c.SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise _Unsupported("scoped inline flags")
        return b"(?:" + _emit(sub) + b")"
    if op is _c.BRANCH:
        return b"(?:" + b"|".join(_emit(alt) for alt in av[1]) + b")"
    if op is _c.AT and av in _ANCHORS:
        return _ANCHORS[av]
    raise _Unsupported(str(op))


def _class(items: Any) -> bytes:
    out = [b"["]
    for op, av in items:
        if op is _c.NEGATE:
            out.append(b"^")
        elif op is _c.LITERAL:
            out.append(_byte(av))
        elif op is _c.RANGE:
            out.append(_byte(av[0]) + b"-" + _byte(av[1]))
        elif op is _c.CATEGORY and av in _CATEGORIES:
            out.append(_CATEGORIES[av])
        else:
            raise _Unsupported(f"class item {op}")
    out.append(b"]")
    return b"".join(out)


def _byte(value: int) -> bytes:
    """One byte, escaped so that no dialect reads it as syntax."""
    return b"\\x%02x" % value


def prefilter(pattern: re.Pattern[bytes]) -> Callable[[Sequence[bytes]], bool] | None:
    """A function telling whether `pattern.search(b"".join(parts))` *may* succeed (False: it
    cannot), or None when there is no prefilter for this pattern here. The parts are scanned as
    one text without being joined (the tail of the body so far and the new chunk)."""
    if _hs is None:
        return None
    translated = translate(pattern)
    if translated is None:
        return None
    expression, caseless = translated
    flags = _hs.HS_FLAG_PREFILTER | _hs.HS_FLAG_SINGLEMATCH | _hs.HS_FLAG_ALLOWEMPTY
    if caseless:
        flags |= _hs.HS_FLAG_CASELESS
    try:
        db = _hs.Database(mode=_hs.HS_MODE_VECTORED)
        db.compile(expressions=[expression], flags=[flags])
    except _hs.error:  # too large, unsupported by the library, or no supported CPU
        return None
    return _Prefilter(db)


class _Prefilter:
    """One compiled pattern; a Hyperscan scratch space per thread (a scratch is single-user,
    and bodies are inspected on worker threads)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._local = threading.local()

    def __call__(self, parts: Sequence[bytes]) -> bool:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _hs.Scratch(self._db)
        try:
            self._db.scan(list(parts), match_event_handler=_stop, scratch=scratch)
        except _hs.ScanTerminated:
            return True
        return False


def _stop(*_args: Any) -> bool:
    """The first possible match is enough: stop the scan."""
    return True
