"""A grant may name what the rules name: a single-label host the policy lists (`localhost`,
an intranet name) is accepted; any other single label (`com` would open a whole top-level
domain) is still refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.overrides import open_store

POLICY = """\
district:
  name: Example School District
  timezone: America/Denver
  policy_url: https://www.example.k12.mt.us/board/policies/social-networking
groups:
  staff:
    networks: [10.20.0.0/16]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, localhost]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
default: allow
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    rules = tmp_path / "policy.yaml"
    rules.write_text(POLICY, encoding="utf-8")
    return {"SOCIALGUARD_STATE": str(tmp_path / "state"), "SOCIALGUARD_RULES": str(rules)}


def _grant(env: dict[str, str], site: str) -> tuple[int, str, str]:
    args = ["grant", "add", "--who", "ip:10.20.1.5", "--site", site, "--for", "1h"]
    r = CliRunner().invoke(app, [*args, "--reason", "r", "--by", "it"], env=env)
    return r.exit_code, r.stdout, r.stderr


def test_a_single_label_site_the_rules_list_can_be_granted(env: dict[str, str]) -> None:
    code, _out, err = _grant(env, "LOCALHOST.")
    assert code == 0, err
    store = open_store(Path(env["SOCIALGUARD_STATE"]) / "socialguard.db")
    try:
        (record,) = store.list_grants(datetime.now(UTC))
    finally:
        store.close()
    assert record.grant.sites == ("localhost",)


@pytest.mark.parametrize("site", ["com", "intranet"])
def test_a_single_label_site_the_rules_do_not_list_is_refused(
    env: dict[str, str], site: str
) -> None:
    code, out, err = _grant(env, site)
    assert code == 2 and out == ""
    assert f"--site: {site!r} is not a domain" in err
    assert "the rules list no such single-label name" in err
