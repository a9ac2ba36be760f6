"""Marker.found_in takes fast paths for slow regex shapes; its answer must equal pattern.search."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socialguard.engine.uploads import Marker

PATTERNS = [
    (rb"CONFIDENTIAL", re.IGNORECASE),
    (rb"Not For Release", re.IGNORECASE),
    (rb"\bS\d{7}\b", 0),
    (rb"\bab", 0),
    (rb"S\d{3}", 0),
    (rb"conf.dential", re.IGNORECASE),
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
    ]
)


@pytest.mark.parametrize(("pattern", "flags"), PATTERNS)
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
