"""The lists shipped in rules/lists/: clean, broad enough, and never over-broad."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from socialguard.policy.lists import read_domain_list

REPO = Path(__file__).resolve().parents[2]
LISTS = REPO / "rules" / "lists"
UT1 = REPO.parent / "shared" / "data" / "ut1"
SHIPPED = ["social.txt", "webmail.txt", "messaging.txt", "doh.txt"]

# Shared infrastructure: a listed parent of any of these would block unrelated sites.
SHARED_INFRASTRUCTURE = [
    "a248.e.akamai.net",
    "scontent.akamaihd.net",
    "d1.cloudfront.net",
    "global.fastly.net",
    "lh3.googleusercontent.com",
    "example.appspot.com",
    "s3.amazonaws.com",
    "x.azureedge.net",
    "www.qq.com",
    "www.google.com",
    "www.gstatic.com",
    "fonts.googleapis.com",
    "www.yahoo.com",
    "www.microsoft.com",
    "login.live.com",
    "www.office.com",
    "outlook.office.com",
    "outlook.office365.com",
    "smtp.outlook.com",
    "www.icloud.com",
    "www.apple.com",
    "github.com",
    "www.wikipedia.org",
    "www.youtube.com",
]


def domains(name: str) -> list[str]:
    return read_domain_list(LISTS / name).domains


def covers(listed: set[str], host: str) -> bool:
    labels = host.split(".")
    return any(".".join(labels[i:]) in listed for i in range(len(labels)))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_list_is_clean(name: str) -> None:
    result = read_domain_list(LISTS / name)
    assert result.format == "plain"
    assert result.invalid == []
    assert result.duplicates == 0
    assert len(result.domains) >= 30


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("host", SHARED_INFRASTRUCTURE)
def test_shipped_list_never_covers_shared_infrastructure(name: str, host: str) -> None:
    assert not covers(set(domains(name)), host)


def test_social_list_groups_at_least_60_services_each_under_a_comment() -> None:
    lines = (LISTS / "social.txt").read_text(encoding="utf-8").splitlines()
    # A service is a `# Name` line directly followed by its first domain.
    services = [
        comment
        for comment, first in pairwise(lines)
        if comment.startswith("# ") and first and not first.startswith("#")
    ]
    assert len(services) >= 60
    assert len(set(services)) == len(services)


@pytest.mark.parametrize(
    "host",
    [
        "www.facebook.com",
        "static.xx.fbcdn.net",
        "scontent.cdninstagram.com",
        "www.tiktok.com",
        "x.com",
        "pbs.twimg.com",
        "www.linkedin.com",
        "media.licdn.com",
        "i.pinimg.com",
        "old.reddit.com",
        "www.snapchat.com",
        "bsky.app",
        "www.threads.net",
        "www.tumblr.com",
    ],
)
def test_social_list_covers_the_major_networks_and_their_cdns(host: str) -> None:
    assert covers(set(domains("social.txt")), host)


def test_shipped_lists_do_not_overlap() -> None:
    seen: dict[str, str] = {}
    for name in SHIPPED:
        for domain in domains(name):
            assert domain not in seen, f"{domain} is in {seen.get(domain)} and {name}"
            seen[domain] = name


@pytest.mark.skipif(not UT1.is_dir(), reason="shared UT1 data not present")
def test_social_list_covers_the_networks_ut1_lists_that_are_still_major() -> None:
    ut1 = read_domain_list(UT1 / "social_networks.domains").domains
    listed = set(domains("social.txt"))
    covered = [d for d in ut1 if covers(listed, d)]
    # Our list is curated, not copied: it covers the big names of UT1's (long, old) list...
    for must in ["facebook.com", "instagram.com", "linkedin.com", "pinterest.com", "vk.com"]:
        assert must in ut1 and covers(listed, must)
    assert len(covered) >= 50
    # ...and most of what it adds beyond UT1 is the asset/CDN domains UT1 does not carry.
    assert len(listed) > len(covered)


@pytest.mark.skipif(not UT1.is_dir(), reason="shared UT1 data not present")
def test_every_doh_endpoint_is_one_ut1_also_knows() -> None:
    ut1 = set(read_domain_list(UT1 / "doh.domains").domains)
    for endpoint in domains("doh.txt"):
        related = covers(ut1, endpoint) or any(u.endswith("." + endpoint) for u in ut1)
        assert related, endpoint
