"""The Hyperscan prefilter never says "no" where Python's `re` finds a match (on real Hyperscan)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socialguard.engine import hsfilter

pytestmark = pytest.mark.skipif(not hsfilter.available(), reason="Hyperscan is not installed here")

_ATOMS = st.sampled_from(
    [
        "a", "b", "S", "1", " ", "x", r"\n", ".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S",
        "[a-c]", "[^a]", r"[\d_]", r"[^\s]", r"\x41", r"\.",
    ]
)  # fmt: skip
_ANCHORS = st.sampled_from(["", "^", "$", r"\b", r"\B", r"\A", r"\Z"])
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "{,2}", "*?", "+?"])


@st.composite
def _patterns(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        pieces.append(draw(_ANCHORS))
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = draw(_patterns(depth + 1))
            alt = draw(_patterns(depth + 1)) if draw(st.booleans()) else None
            body = inner if alt is None else f"{inner}|{alt}"
            pieces.append(draw(st.sampled_from(["(", "(?:"])) + body + ")")
        else:
            pieces.append(draw(_ATOMS))
        pieces.append(draw(_QUANTIFIERS))
    return "".join(pieces)


_TEXTS = st.text(alphabet="abcxS1_ \n-A.", max_size=30).map(lambda t: t.encode("latin-1"))


@settings(max_examples=400, deadline=None)
@given(
    source=_patterns(),
    flags=st.sampled_from([0, re.IGNORECASE]),
    texts=st.lists(_TEXTS, min_size=1),
)
def test_a_match_re_finds_is_never_ruled_out(source: str, flags: int, texts: list[bytes]) -> None:
    try:
        pattern = re.compile(source.encode("latin-1"), flags)
    except re.error:
        return
    assert hsfilter.translate(pattern) is not None, f"{source!r} is within the supported subset"
    may_match = hsfilter.prefilter(pattern)
    if may_match is None:  # Hyperscan refused it (e.g. `$a` can never match): searched by re alone
        return
    for text in texts:
        if pattern.search(text) is not None:
            assert may_match([text]), f"{source!r} matches {text!r} but the prefilter said no"
            cut = len(text) // 2  # the same text in two pieces, as tail + chunk
            assert may_match([text[:cut], text[cut:]]), f"{source!r} across pieces of {text!r}"


@pytest.mark.parametrize(
    "source", [rb"(a)\1", rb"(?=a)b", rb"(?<!a)b", rb"(?m)^a", rb"(?x)a b", rb"(?s:a.)"]
)
def test_constructs_outside_the_subset_get_no_prefilter(source: bytes) -> None:
    assert hsfilter.prefilter(re.compile(source)) is None


def test_the_shipped_markers_are_prefiltered_and_rule_out_plain_text() -> None:
    student = hsfilter.prefilter(re.compile(rb"\bS\d{7}\b"))
    confidential = hsfilter.prefilter(re.compile(rb"CONFIDENTIAL", re.IGNORECASE))
    assert student is not None and confidential is not None
    prose = b"Dear families, Seniors collect caps; Call Ms. Sanchez at 555-0142. " * 100
    assert not student([prose]) and not confidential([prose])
    assert student([prose, b" S1234567"]) and confidential([prose + b"Confid", b"ential"])


def test_the_policy_s_markers_use_the_prefilter() -> None:
    """Markers built as the policy builds them carry it: the fast path is the one that runs."""
    from socialguard.engine.uploads import Marker

    for pattern in (re.compile(rb"\bS\d{7}\b"), re.compile(rb"CONFIDENTIAL", re.IGNORECASE)):
        assert Marker("m", pattern)._may_match is not None
