"""Services: a grant or emergency for a domain lifts its whole service; decisions name it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from socialguard.engine import (
    Action,
    Basis,
    CompiledPolicy,
    Decision,
    Emergency,
    Grant,
    Overrides,
    Request,
    decide,
    resolve_principal,
)
from socialguard.errors import PolicyError

DENVER = ZoneInfo("America/Denver")
SCHOOL_TIME = datetime(2026, 12, 1, 10, 0, tzinfo=DENVER)
MakePolicy = Callable[..., CompiledPolicy]

CATALOGUE = """
services:
  facebook:
    name: Facebook
    domains: [facebook.com, facebook.net, fbcdn.net, fb.me]
  instagram:
    name: Instagram
    domains: [instagram.com, cdninstagram.com, fbcdn.net]
  tiktok:
    name: TikTok
    domains: [tiktok.com, tiktokcdn.com]
"""

RULES = """
include: [services.yaml]
rules:
  - id: staff-social
    description: No social networking in school hours
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
    bypass: [grant, emergency]
default: allow
"""


SOCIAL = (
    "[facebook.com, instagram.com, facebook.net, fbcdn.net, fb.me, cdninstagram.com, tiktok.com, "
    "tiktokcdn.com]"
)


@pytest.fixture
def make_policy(make_policy: MakePolicy, engine_base: str) -> MakePolicy:
    """The engine's policy maker, with the social category covering the catalogue's domains."""
    base = engine_base.replace("[facebook.com, instagram.com]", SOCIAL)

    def make(extra: str, **kw: object) -> CompiledPolicy:
        return make_policy(extra, base=base, **kw)

    return make


@pytest.fixture
def policy(make_policy: MakePolicy) -> CompiledPolicy:
    return make_policy(RULES, files={"services.yaml": CATALOGUE})


def ask(policy: CompiledPolicy, host: str, overrides: Overrides = Overrides.EMPTY) -> Decision:
    principal = resolve_principal(policy, "10.20.1.5")
    return decide(policy, Request(host=host), principal, SCHOOL_TIME, overrides)


def _grant(*sites: str) -> Overrides:
    start = SCHOOL_TIME.astimezone(UTC) - timedelta(minutes=1)
    grant = Grant("g1", "ip:10.20.1.5", sites, start, start + timedelta(hours=1), "lesson", "admin")
    return Overrides.build([grant], [])


FACEBOOK_PAGE_AND_ASSETS = [
    "www.facebook.com",
    "static.xx.fbcdn.net",
    "scontent.xx.fbcdn.net",
    "connect.facebook.net",
    "fb.me",
]


@pytest.mark.parametrize("host", FACEBOOK_PAGE_AND_ASSETS)
def test_a_grant_for_the_page_domain_opens_every_domain_of_its_service(
    policy: CompiledPolicy, host: str
) -> None:
    d = ask(policy, host, _grant("www.facebook.com"))
    assert (d.action, d.basis, d.override_id) == (Action.ALLOW, Basis.GRANT, "g1")


@pytest.mark.parametrize("host", ["www.tiktok.com", "v16.tiktokcdn.com", "www.instagram.com"])
def test_a_grant_for_one_service_leaves_the_others_blocked(
    policy: CompiledPolicy, host: str
) -> None:
    assert ask(policy, host, _grant("www.facebook.com")).action is Action.BLOCK


def test_a_domain_only_grant_opens_that_domain_alone(policy: CompiledPolicy) -> None:
    overrides = _grant("domain:www.facebook.com")
    assert ask(policy, "www.facebook.com", overrides).action is Action.ALLOW
    assert ask(policy, "static.xx.fbcdn.net", overrides).action is Action.BLOCK


def test_a_service_grant_names_the_service(policy: CompiledPolicy) -> None:
    overrides = _grant("service:tiktok")
    assert ask(policy, "v16.tiktokcdn.com", overrides).action is Action.ALLOW
    assert ask(policy, "www.facebook.com", overrides).action is Action.BLOCK


def test_a_self_declared_emergency_for_the_page_opens_the_whole_service(
    policy: CompiledPolicy,
) -> None:
    start = SCHOOL_TIME.astimezone(UTC) - timedelta(minutes=1)
    e = Emergency(
        "e1", "ip:10.20.1.5", start, start + timedelta(minutes=30), "child pickup", "self",
        sites=("www.facebook.com",), self_declared=True,
    )  # fmt: skip
    overrides = Overrides.build([], [e])
    for host in FACEBOOK_PAGE_AND_ASSETS:
        d = ask(policy, host, overrides)
        assert (d.action, d.basis) == (Action.ALLOW, Basis.EMERGENCY), host
    assert ask(policy, "www.tiktok.com", overrides).action is Action.BLOCK


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("www.facebook.com", "facebook"),
        ("static.xx.fbcdn.net", "facebook"),  # shared with Instagram: the first listed
        ("scontent.cdninstagram.com", "instagram"),
        ("www.tiktok.com", "tiktok"),
        ("www.example.org", None),
    ],
)
def test_the_decision_names_the_service(
    policy: CompiledPolicy, host: str, service: str | None
) -> None:
    assert ask(policy, host).service == service
    assert ask(policy, host).service == service  # the remembered decision too


def test_a_rule_may_name_services(make_policy: MakePolicy) -> None:
    rules = """
include: [services.yaml]
rules:
  - id: no-tiktok
    description: No TikTok
    what:
      services: [tiktok]
    action: block
"""
    policy = make_policy(rules, files={"services.yaml": CATALOGUE})
    assert ask(policy, "v16.tiktokcdn.com").rule_id == "no-tiktok"
    assert ask(policy, "www.facebook.com").action is Action.ALLOW


def test_the_rules_file_changes_a_service_of_the_catalogue(make_policy: MakePolicy) -> None:
    rules = """
include: [services.yaml]
services:
  tiktok: {name: TikTok (ByteDance), add: [tiktokv.com]}
  forum: {name: District-wide forum, domains: [forum.example.org]}
"""
    policy = make_policy(rules, files={"services.yaml": CATALOGUE})
    assert policy.services.name_of("tiktok") == "TikTok (ByteDance)"
    assert policy.service_of("api.tiktokv.com") == "tiktok"
    assert policy.service_of("forum.example.org") == "forum"


def test_a_shared_cdn_in_a_service_is_refused_with_its_line(make_policy: MakePolicy) -> None:
    rules = """
services:
  forum: {name: Forum, domains: [forum.example.org, d1234.cloudfront.net]}
"""
    with pytest.raises(PolicyError) as e:
        make_policy(rules)
    assert "cloudfront.net is shared infrastructure" in str(e.value)
    assert "policy.yaml:" in str(e.value)


def test_a_rule_naming_an_unknown_service_is_refused(make_policy: MakePolicy) -> None:
    rules = """
rules:
  - id: r
    description: r
    what: {services: [tiktk]}
    action: block
"""
    with pytest.raises(PolicyError, match="unknown service 'tiktk'"):
        make_policy(rules)


def test_a_lifted_decision_is_remembered_only_for_its_own_grant(policy: CompiledPolicy) -> None:
    start = SCHOOL_TIME.astimezone(UTC) - timedelta(minutes=1)
    first = Grant("g1", "ip:10.20.1.5", ("www.facebook.com",), start, start + timedelta(hours=1),
                  "lesson", "admin")  # fmt: skip
    overrides = Overrides.build([first], [])
    principal = resolve_principal(policy, "10.20.1.5")  # the proxy keeps one per client
    asset = Request(host="static.xx.fbcdn.net")
    a = [decide(policy, asset, principal, SCHOOL_TIME, overrides) for _ in range(3)]
    assert a[1] is a[2] and a[2].override_id == "g1"
    # the same grant extended: a new snapshot, a new decision naming the new end
    longer = Overrides.build([replace(first, ends=start + timedelta(hours=2))], [])
    assert "until 2026-12-01 18:59Z" in ask(policy, "static.xx.fbcdn.net", longer).trace[-1].outcome
    # revoked (a snapshot without it): blocked again at once
    assert ask(policy, "static.xx.fbcdn.net", Overrides.build([], [])).action is Action.BLOCK
