"""decide() for hosts met for the first time answers as it does once they are cached.

A new subdomain takes its parent domain's tags and rules from a per-parent cache, and skips the
decision cache on first sight (engine/compiled.py host_rules). These tests pin the edges of that
shortcut: a listed name below a cached parent, an approved page's host and the names below it,
IP-like names, a name asked about a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from socialguard.engine import (
    CompiledPolicy,
    Decision,
    Principal,
    Request,
    decide,
    resolve_principal,
)

SCHOOL_TIME = datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo("America/Denver"))
MakePolicy = Callable[..., CompiledPolicy]

RULES = """
rules:
  - id: approved-pages
    description: District page
    who: [all-staff]
    what:
      urls: ["https://www.facebook.com/District"]
    action: allow
  - id: staff-games
    description: No games
    who: [staff]
    what:
      categories: [games]
    action: block
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


@pytest.fixture
def policy(make_policy: MakePolicy, engine_base: str) -> CompiledPolicy:
    # games.facebook.com is listed itself, below the listed facebook.com
    base = engine_base.replace(
        "categories:\n", "categories:\n  games:\n    domains: [games.facebook.com]\n", 1
    )
    return make_policy(RULES, base=base)


def _ask(
    policy: CompiledPolicy, host: str, path: str = "/", principal: Principal | None = None
) -> Decision:
    who = principal if principal is not None else resolve_principal(policy, "10.20.1.5")
    return decide(policy, Request(host=host, path=path), who, SCHOOL_TIME)


def _answer(d: Decision) -> tuple[object, ...]:
    return (d.action, d.basis, d.rule_id, d.category, d.matched_domain, d.host, d.trace)


@pytest.mark.parametrize(
    "case",
    [
        ("n1.facebook.com", "/", "staff-social", "social", "facebook.com"),
        ("games.facebook.com", "/", "staff-games", "games", "games.facebook.com"),
        ("x.games.facebook.com", "/", "staff-games", "games", "games.facebook.com"),
        ("www.facebook.com", "/District/x", "approved-pages", None, "www.facebook.com"),
        ("n2.www.facebook.com", "/District/x", "staff-social", "social", "facebook.com"),
        ("n3.example.org", "/", None, None, None),
        ("10.1.2.3", "/", None, None, None),
        ("157.240.1.1", "/", "staff-social", "social", "157.240.0.0/16"),
    ],
)
def test_a_new_host_below_a_cached_parent_decides_as_a_fresh_policy_and_as_when_cached(
    make_policy: MakePolicy,
    policy: CompiledPolicy,
    engine_base: str,
    case: tuple[str, str, str | None, str | None, str | None],
) -> None:
    host, path, rule, category, matched = case
    # warm the per-parent caches with siblings first, so that `host` is answered from them
    for sibling in ("warm.facebook.com", "warm.www.facebook.com", "warm.games.facebook.com"):
        _ask(policy, sibling)
    _ask(policy, "warm.example.org")
    first = _ask(policy, host, path)
    again = _ask(policy, host, path)
    assert (first.rule_id, first.category, first.matched_domain) == (rule, category, matched)
    assert _answer(again) == _answer(first)
    fresh = make_policy(
        RULES,
        base=engine_base.replace(
            "categories:\n", "categories:\n  games:\n    domains: [games.facebook.com]\n", 1
        ),
    )
    assert _answer(_ask(fresh, host, path)) == _answer(first)


def test_a_host_asked_again_gets_the_remembered_decision(policy: CompiledPolicy) -> None:
    principal = resolve_principal(policy, "10.20.1.5")
    first, second, third = (_ask(policy, "n9.facebook.com", "/", principal) for _ in range(3))
    # the first sight is not remembered; the second fills the cache the third reads
    assert second is not first
    assert third is second
    assert _answer(first) == _answer(second)


def test_the_cached_host_tags_are_the_hosts_classification(policy: CompiledPolicy) -> None:
    """decide_connection takes a host's tags from host_rules (cached) instead of classify()."""
    names = ["warm.facebook.com", "n1.facebook.com", "games.facebook.com", "x.games.facebook.com",
             "www.facebook.com", "n2.www.facebook.com", "n3.example.org", "10.1.2.3",
             "157.240.1.1", "facebook.com"]  # fmt: skip
    for _ in range(2):  # first sight (the per-parent shortcut), then from the per-host cache
        for host in names:
            assert dict(policy.host_rules(host)[0]) == dict(policy.classify(host)), host
