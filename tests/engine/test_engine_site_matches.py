"""engine.site_matches: what a grant's or an emergency's site covers."""

from __future__ import annotations

import pytest

from socialguard.engine import site_matches

TAGS = {"category:social": "facebook.com"}


@pytest.mark.parametrize(
    ("site", "host", "covered"),
    [
        ("facebook.com", "facebook.com", True),
        ("facebook.com", "m.facebook.com", True),
        ("facebook.com", "notfacebook.com", False),
        ("category:social", "www.facebook.com", True),
        ("category:video", "www.facebook.com", False),
        ("203.0.113.0/24", "203.0.113.7", True),  # a block by a category's `networks:`
        ("203.0.113.0/24", "203.0.114.7", False),
        ("203.0.113.0/24", "www.example.org", False),
        ("2001:db8::/32", "2001:db8::1", True),
        ("2001:db8::/32", "203.0.113.7", False),
    ],
)
def test_a_site_covers_its_domain_category_or_network(site: str, host: str, covered: bool) -> None:
    assert site_matches(site, host, TAGS) is covered
