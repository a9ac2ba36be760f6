"""engine/paths.py: request targets normalised as origins read them, and what has no one reading."""

from __future__ import annotations

import pytest

from socialguard.engine.paths import AmbiguousPath, readings, request_target


@pytest.mark.parametrize(
    ("target", "normalised"),
    [
        ("/", "/"),
        ("", ""),
        ("*", "*"),
        ("/ExampleSchoolDistrict/photos?x=1", "/ExampleSchoolDistrict/photos?x=1"),
        ("/a/../b", "/b"),
        ("/a/./b/", "/a/b/"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/../../etc", "/etc"),
        ("/a//b///c", "/a/b/c"),
        ("/a/%2e%2E/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/%41b%7ec", "/Ab~c"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a\\..\\b", "/b"),
        ("/a?q=../%2f", "/a?q=../%2f"),
        ("/a;jsessionid=1/b", "/a;jsessionid=1/b"),
        ("/a b", "/a%20b"),
        ("/caf\u00e9", "/caf%C3%A9"),
        ("/.well-known/x", "/.well-known/x"),
    ],
)
def test_a_target_is_normalised_as_a_normalising_origin_reads_it(
    target: str, normalised: str
) -> None:
    assert request_target(target) == normalised


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/a/..%2fb", "escaped slash"),
        ("/a/..%2Fb", "escaped slash"),
        ("/a/..%5cb", "escaped backslash"),
        ("/a/%00", "NUL"),
        ("/a/..;x/b", "dot segment with parameters"),
        ("/a/.;/b", "dot segment with parameters"),
        ("/a/%252e%252e/b", "escaped escape"),
        ("/a/%zz", "starts no escape"),
        ("/a/%2", "starts no escape"),
        ("/a#/../b", "fragment"),
        ("a/b", "does not start with /"),
    ],
)
def test_a_target_with_no_single_reading_is_refused(target: str, why: str) -> None:
    with pytest.raises(AmbiguousPath, match=why):
        request_target(target)


def test_an_escaped_percent_before_text_is_one_reading() -> None:
    assert request_target("/100%25/x") == "/100%25/x"


def test_parameters_give_a_second_reading_without_them() -> None:
    assert readings("/a;x=1/b;y?q;z") == ("/a;x=1/b;y?q;z", "/a/b?q;z")
    assert readings("/a/b") == ("/a/b",)
