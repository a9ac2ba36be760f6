"""Host normalisation: every spelling of a host reaches the engine in one canonical form."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socialguard.engine import domain_suffixes, is_ip_literal, normalise_host


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("facebook.com", "facebook.com"),
        ("FACEBOOK.COM.", "facebook.com"),
        ("  m.Facebook.com  ", "m.facebook.com"),
        ("facebook.com:443", "facebook.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        # UTS #46 non-transitional (IDNA 2008), as browsers and curl send them: ß and ς are
        # letters of their own, not `ss` and the medial sigma, as Python's IDNA 2003 codec had them.
        ("faß.de", "xn--fa-hia.de"),
        ("FAß.DE", "xn--fa-hia.de"),
        ("ελληνικός.gr", "xn--qxaegecap6byf.gr"),
        ("ﬁsh.example", "fish.example"),  # compatibility mapping still applies
        ("☃.net", "xn--n3h.net"),  # a symbol IDNA 2008 leaves out and browsers still send
        ("10.20.1.5", "10.20.1.5"),
        ("10.20.1.5:8080", "10.20.1.5"),
        ("2130706433", "127.0.0.1"),  # browsers read a bare number as IPv4
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("2001:0db8:0000::0001", "2001:db8::1"),
        ("::ffff:10.20.1.5", "10.20.1.5"),
        ("[64:ff9b::203.0.113.7]", "203.0.113.7"),  # NAT64 (RFC 6052) reaches the IPv4 host
        ("64:ff9b::cb00:7107", "203.0.113.7"),
        ("[::203.0.113.7]", "203.0.113.7"),  # IPv4-compatible (RFC 4291, deprecated)
        ("::", "::"),  # unspecified, not IPv4-compatible
        ("::2", "::2"),
        ("64:ff9b:1::cb00:7107", "64:ff9b:1::cb00:7107"),  # local-use NAT64: operator-defined
        ("fe80::1%eth0", "fe80::1"),
        ("_dmarc.example.com", "_dmarc.example.com"),
    ],
)
def test_normalise_host_gives_the_canonical_spelling(raw: str, expected: str) -> None:
    assert normalise_host(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        (".", "not a host"),
        ("exa mple.com", "not a valid host"),
        ("a..b", "not a valid host"),
        ("-bad.example", "not a valid host"),
        ("facebook.com:99999", "bad port"),
        ("facebook.com:http", "bad port"),
        ("[::1", "unclosed"),
        ("256.1.1.1", "IPv4"),
        ("1.2.3.4.5", "IPv4"),
        ("a.0x", "IPv4"),  # a last label that browsers read as a number makes it an address
        ("09.1.1.1", "IPv4"),
        ("gggg::1", "IPv6"),
        ("a" * 64 + ".example", "not a valid host"),
        (("abc." * 70) + "com", "longer than"),
    ],
)
def test_normalise_host_refuses_what_cannot_be_a_host(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalise_host(raw)


def test_ip_literals_are_recognised_and_names_are_not() -> None:
    assert is_ip_literal("10.0.0.1")
    assert is_ip_literal("2001:db8::1")
    assert not is_ip_literal("facebook.com")
    assert not is_ip_literal("x1.example")


def test_domain_suffixes_walk_label_boundaries() -> None:
    assert domain_suffixes("a.b.example") == ["a.b.example", "b.example", "example"]


# Labels that browsers read as IPv4 numbers (`12`, `0x1f`) would make the name an address.
_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", s)
)
_NAME = st.lists(_LABEL, min_size=2, max_size=5).map(".".join)


@given(_NAME)
def test_normalising_twice_changes_nothing(name: str) -> None:
    once = normalise_host(name)
    assert normalise_host(once) == once


@given(_NAME, st.sampled_from(["", ".", ":443", ".:8080"]), st.booleans())
def test_case_trailing_dot_and_port_do_not_change_the_host(
    name: str, suffix: str, upper: bool
) -> None:
    spelled = (name.upper() if upper else name) + suffix
    assert normalise_host(spelled) == name
