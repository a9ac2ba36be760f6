"""Suffix matching: a listed domain matches itself and its subdomains, on label boundaries only."""

from __future__ import annotations

import ipaddress

from hypothesis import assume, given
from hypothesis import strategies as st

from socialguard.engine.domains import DomainIndexBuilder, NetworkIndex


def _index(**categories: list[str]):  # type: ignore[no-untyped-def]
    builder = DomainIndexBuilder()
    for name, domains in categories.items():
        builder.add(domains, f"category:{name}")
    return builder.build()


def test_a_domain_matches_itself_and_its_subdomains() -> None:
    index = _index(social=["facebook.com"])
    assert index.lookup("facebook.com") == {"category:social": "facebook.com"}
    assert index.lookup("m.facebook.com") == {"category:social": "facebook.com"}
    assert index.lookup("a.b.c.facebook.com") == {"category:social": "facebook.com"}


def test_look_alikes_do_not_match() -> None:
    index = _index(social=["facebook.com"])
    assert index.lookup("notfacebook.com") == {}
    assert index.lookup("facebook.com.evil.example") == {}
    assert index.lookup("com") == {}


def test_the_most_specific_listed_domain_is_reported() -> None:
    index = _index(social=["facebook.com", "m.facebook.com"])
    assert index.lookup("x.m.facebook.com") == {"category:social": "m.facebook.com"}


def test_a_domain_in_several_categories_carries_every_tag() -> None:
    index = _index(social=["example.com", "other.org"], chat=["chat.example.com", "example.com"])
    assert index.lookup("chat.example.com") == {
        "category:chat": "chat.example.com",
        "category:social": "example.com",
    }
    assert index.tags_of("example.com") == {"category:social", "category:chat"}
    assert len(index) == 3


def test_network_index_matches_addresses_of_the_same_family() -> None:
    nets = NetworkIndex(
        (
            (ipaddress.ip_network("157.240.0.0/16"), "category:social"),
            (ipaddress.ip_network("2a03:2880::/32"), "category:social"),
        )
    )
    assert nets.lookup("157.240.1.35") == {"category:social": "157.240.0.0/16"}
    assert nets.lookup("2a03:2880::1") == {"category:social": "2a03:2880::/32"}
    assert nets.lookup("10.0.0.1") == {}
    assert nets.lookup("not-an-ip") == {}


_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=2, max_size=4).map(".".join)


@given(_DOMAIN, st.lists(_LABEL, max_size=4))
def test_any_subdomain_of_a_listed_domain_matches(domain: str, prefix: list[str]) -> None:
    index = _index(c=[domain])
    host = ".".join([*prefix, domain])
    assert index.lookup(host) == {"category:c": domain}


@given(_DOMAIN, _LABEL, st.sampled_from(["", "x", "-"]))
def test_a_label_boundary_mismatch_never_matches(domain: str, glue: str, joiner: str) -> None:
    index = _index(c=[domain])
    glued = glue + joiner + domain  # notfacebook.com, x-facebook.com
    assert index.lookup(glued) == {}
    followed = f"{domain}.{glue}.example"  # facebook.com.evil.example
    assume(not followed.endswith("." + domain))  # else it is a genuine subdomain
    assert index.lookup(followed) == {}
