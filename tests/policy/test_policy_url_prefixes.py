"""`urls:` prefixes compile to the normalised form requests are matched in, with their port."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from socialguard.engine import Action, Overrides, Request, decide, resolve_principal
from socialguard.errors import PolicyError
from socialguard.policy import load_policy

RULES = """\
district:
  name: D
groups:
  staff:
    networks: [10.20.0.0/16]
rules:
  - id: page
    description: an approved page
    who: [staff]
    what:
      urls: [{url}]
    action: allow
  - id: site
    description: the rest of the site
    who: [staff]
    what:
      domains: [example.org]
    action: block
default: allow
"""
NOON = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)


def _policy(tmp_path: Path, url: str) -> object:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(RULES.format(url=url)), encoding="utf-8")
    return load_policy(path)


def _action(policy: object, url_path: str, port: int | None = None) -> Action:
    principal = resolve_principal(policy, "10.20.0.5")  # type: ignore[arg-type]
    request = Request("www.example.org", "https", "GET", url_path, port)
    return decide(policy, request, principal, NOON, Overrides.EMPTY).action  # type: ignore[arg-type]


def test_a_prefix_is_normalised_like_the_requests_it_matches(tmp_path: Path) -> None:
    policy = _policy(tmp_path, '"https://www.example.org/a/./caf%c3%a9//"')
    assert _action(policy, "/a/caf%C3%A9/menu") is Action.ALLOW
    assert _action(policy, "/a/b/../caf%c3%a9/menu") is Action.ALLOW
    assert _action(policy, "/a/caf%C3%A9/../../other") is Action.BLOCK


@pytest.mark.parametrize(("url", "port", "expected"), [
    ('"https://www.example.org/a/"', None, Action.ALLOW),
    ('"https://www.example.org/a/"', 443, Action.ALLOW),
    ('"https://www.example.org/a/"', 8443, Action.BLOCK),
    ('"https://www.example.org:8443/a/"', 8443, Action.ALLOW),
    ('"https://www.example.org:8443/a/"', 443, Action.BLOCK),
])  # fmt: skip
def test_a_prefix_matches_its_own_port_only(
    tmp_path: Path, url: str, port: int | None, expected: Action
) -> None:
    assert _action(_policy(tmp_path, url), "/a/x", port) is expected


def test_a_prefix_with_no_single_reading_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(RULES.format(url='"https://www.example.org/a%2fb/"'), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{path}:11: rules[0].what.urls[0]:")
    assert "escaped slash" in str(problem)
