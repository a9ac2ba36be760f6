"""Marker.found_in takes fast paths for slow regex shapes; its answer must equal pattern.search.

The streaming scan (`UploadInspector`) shares one window per chunk between markers and skips a
chunk when a byte every match needs is missing; fed in any chunks, it must find what
`re.search` finds in the text, and what a plain `re.search` of each `tail + chunk` finds.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socialguard.engine.uploads import Marker, UploadInspector, UploadRules

PATTERNS = [
    (rb"CONFIDENTIAL", re.IGNORECASE),
    (rb"Not For Release", re.IGNORECASE),
    (rb"\bS\d{7}\b", 0),
    (rb"\bab", 0),
    (rb"S\d{3}", 0),
    (rb"conf.dential", re.IGNORECASE),
    # shapes the prefilter reads a required literal from, or must leave alone
    (rb"S\d{7}\b", 0),
    (rb"\bconf.dential", re.IGNORECASE),
    (rb"\bS\d", re.IGNORECASE),
    (rb"xS?1", 0),
    (rb"ab*", 0),
    (rb"S{2}1", 0),
    (rb"S\d|x7", 0),
    (rb"^S\d", re.MULTILINE),
    (rb"S.\d", re.DOTALL),
    (rb"(?i)confidential", 0),
    (rb"[sx]1", 0),
    (rb"x s", re.VERBOSE),
    (rb"\xc3S", re.IGNORECASE),
    (rb"_a_", re.IGNORECASE),
]
ALPHABET = st.sampled_from(
    [
        b"S",
        b"s",
        b"1",
        b"7",
        b" ",
        b"x",
        b"_",
        b"a",
        b"b",
        b"\n",
        b"\xc3",
        b"CONFIDENTIAL",
        b"confidential",
        b"S1234567",
        b"not for release",
        b"cOnFiDeNtIaL",
        b"X",
        b"ss",
    ]
)


@pytest.mark.parametrize(("pattern", "flags"), PATTERNS)
@settings(deadline=None)  # a property, not a timing: a loaded CI machine missed the 200 ms default
@given(chunks=st.lists(ALPHABET, max_size=40))
def test_found_in_agrees_with_the_regex(pattern: bytes, flags: int, chunks: list[bytes]) -> None:
    compiled = re.compile(pattern, flags)
    data = b"".join(chunks)
    assert Marker("m", compiled).found_in(data) == (compiled.search(data) is not None)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"id S1234567 here", True),
        (b"S1234567", True),
        (b"xS1234567", False),  # no word boundary before
        (b"xS1234567 S7654321", True),  # the second candidate has one
        (b"S12345678", False),  # eight digits: no boundary after
    ],
)
def test_student_id_boundaries(data: bytes, found: bool) -> None:
    assert Marker("student-id", re.compile(rb"\bS\d{7}\b")).found_in(data) is found


SHIPPED = (
    Marker("confidential", re.compile(rb"CONFIDENTIAL", re.IGNORECASE)),
    Marker("student-id", re.compile(rb"\bS\d{7}\b")),
)
MORE = (  # a second folded marker and a literal one share the chunk's window with them
    Marker("release", re.compile(rb"Not For Release", re.IGNORECASE)),
    Marker("ssn-ish", re.compile(rb"xS?1")),
    Marker("dotted", re.compile(rb"conf.dential", re.IGNORECASE)),
)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts` (clamped, deduplicated, in order): the chunks a body arrives in."""
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _streamed(markers: tuple[Marker, ...], data: bytes, cuts: list[int], window: int) -> list[str]:
    inspector = UploadInspector(UploadRules(markers=markers, marker_window=window), "text/plain")
    for piece in _pieces(data, cuts):
        inspector.feed(piece)
    return sorted(inspector.finish().markers)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(ALPHABET, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_a_streamed_text_misses_nothing_the_regex_finds_in_it(
    chunks: list[bytes], cuts: list[int]
) -> None:
    """Text shorter than the window: every match, straddling chunks or not, is in some window.
    (Not equality: a window's end is an end of text to `\\b`, so `S1234567|8` cut at the bar
    is a student-id to the scan, as it always was; the next test pins that exact behaviour.)"""
    data = b"".join(chunks)
    markers = SHIPPED + MORE
    expected = {m.name for m in markers if m.pattern.search(data)}
    assert expected <= set(_streamed(markers, data, cuts, window=1024))


def _reference(markers: tuple[Marker, ...], data: bytes, cuts: list[int], window: int) -> list[str]:
    """The scan's definition: each marker searched by re in the last `window` bytes + chunk."""
    tail, found = b"", set()
    for piece in _pieces(data, cuts):
        text = tail + piece
        found |= {m.name for m in markers if m.name not in found and m.pattern.search(text)}
        tail = text[-window:]
    return sorted(found)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(ALPHABET, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20),
)
def test_a_streamed_text_keeps_the_scan_of_tail_plus_chunk(
    chunks: list[bytes], cuts: list[int]
) -> None:
    """A 12-byte window, shorter than "Not For Release": exactly re on each tail + chunk, so a
    long match straddling chunks is found only when the tail holds its start."""
    data = b"".join(chunks)
    markers = SHIPPED + MORE
    assert _streamed(markers, data, cuts, window=12) == _reference(markers, data, cuts, 12)


@pytest.mark.parametrize(
    ("chunks", "found"),
    [
        # the prefilter sees the tail: "CONF" and "IDENTIAL" are in different chunks
        ([b"xx CONF", b"IDENTIAL yy"], ["confidential"]),
        # the missing letter ("o") is only in the tail, the rest only in the chunk
        ([b"c" * 50 + b"o", b"nfidential"], ["confidential"]),
        ([b"S123", b"4567 ok"], ["student-id"]),
        ([b"aS123", b"4567 ok"], []),  # no boundary before the S, though it is a chunk back
        ([b"hex 0123456789abcdef" * 100], []),  # no "o", no "S": both markers skip the chunk
    ],
)
def test_markers_split_across_chunks(chunks: list[bytes], found: list[str]) -> None:
    inspector = UploadInspector(UploadRules(markers=SHIPPED), "text/plain")
    for chunk in chunks:
        inspector.feed(chunk)
    assert sorted(inspector.finish().markers) == found


@pytest.mark.parametrize(
    ("chunks", "found"),
    [
        ([b"Not For Rele", b"ase"], ["release"]),  # 12 bytes in the tail: all of it kept
        ([b"Not For Relea", b"se"], []),  # 13: its first byte fell out of the window
        ([b"Not F", b"or Rele", b"ase"], ["release"]),  # the tail built from short chunks
        ([b"Not F", b"or Relea", b"se"], []),
    ],
)
def test_the_tail_is_exactly_marker_window_bytes(chunks: list[bytes], found: list[str]) -> None:
    inspector = UploadInspector(UploadRules(markers=MORE, marker_window=12), "text/plain")
    for chunk in chunks:
        inspector.feed(chunk)
    assert sorted(inspector.finish().markers) == found
