"""The block page's forms cannot be used to flood administration or multiply emergencies.

The policy lets a person declare an emergency (a few times a day) and ask administration for
access. Someone the proxy cannot name (no sign-in, no inventory device: only an address) must not
get more by asking again and again, nor by changing address: each case posts the real forms
through the real proxy, from real loopback addresses, and counts what the store filed and what the
decision log says.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from socialguard_proxy_harness import curl  # type: ignore[import-not-found]  # conftest loads it

pytestmark = pytest.mark.e2e

RULES = """\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
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
HTML = ("-H", "Accept: text/html")


def post_form(
    proxy: Any,
    form: str,
    address: str,
    reason: str = "Need it for class",
    extra: tuple[str, ...] = (),
) -> int:
    """Open the block page from `address` and post its `form`; the answer's status. `extra`:
    more curl arguments (credentials)."""
    source = ("--interface", address, *extra)
    page = curl(proxy, "https://www.facebook.com/some/page", *HTML, *source)
    assert page.status == 403, "the site is blocked for this address"
    tokens = dict(
        re.findall(r'action="/\.socialguard/(\w+)".*?name="token" value="([^"]+)"', page.body)
    )
    return curl(
        proxy,
        f"https://www.facebook.com/.socialguard/{form}",
        "--data-urlencode", f"token={tokens[form]}",
        "--data-urlencode", f"reason={reason}",
        *source,
    ).status  # fmt: skip


def store_rows(proxy: Any, table: str) -> int:
    db = Path(proxy.rules.parent / "state" / "socialguard.db")
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def outcomes(proxy: Any) -> list[str]:
    return [str(r.get("outcome")) for r in proxy.records() if r.get("type") == "form"]


def test_access_requests_from_one_address_are_limited_per_day(start_proxy: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    statuses = [post_form(proxy, "request", "127.0.0.1") for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3  # requests_per_day: 5 by default
    assert store_rows(proxy, "access_requests") == 5
    assert outcomes(proxy) == ["access_requested"] * 5 + ["limit_reached"] * 3


def test_unidentified_addresses_share_one_daily_emergency_allowance(start_proxy: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    addresses = [f"127.0.0.{n}" for n in range(2, 12)]  # ten addresses, nobody the proxy can name
    statuses = [post_form(proxy, "emergency", a, "Family emergency") for a in addresses]
    # emergency_per_day_unidentified: 5 by default, whatever the number of addresses
    assert statuses == [303] * 5 + [429] * 5
    assert store_rows(proxy, "emergencies") == 5
    assert outcomes(proxy) == ["emergency_declared"] * 5 + ["limit_reached"] * 5


def test_the_limits_are_read_from_the_rules(start_proxy: Any) -> None:
    rules = RULES + (
        "overrides:\n  emergency_per_day: 1\n  emergency_per_day_unidentified: 2\n"
        "  requests_per_day: 1\n  requests_per_day_unidentified: 2\n"
    )
    proxy = start_proxy(rules_text=rules, at=datetime.now(UTC) + timedelta(minutes=1))
    # one address may ask once; three addresses together twice
    assert [post_form(proxy, "request", "127.0.0.2") for _ in range(2)] == [200, 429]
    assert post_form(proxy, "request", "127.0.0.3") == 200
    assert post_form(proxy, "request", "127.0.0.4") == 429
    assert post_form(proxy, "emergency", "127.0.0.5") == 303
    assert post_form(proxy, "emergency", "127.0.0.6") == 303
    assert post_form(proxy, "emergency", "127.0.0.7") == 429


def test_a_signed_in_person_has_their_own_allowance_across_addresses(
    start_proxy: Any, tmp_path: Path
) -> None:
    import bcrypt

    users = tmp_path / "users.htpasswd"
    users.write_text(f"jdoe:{bcrypt.hashpw(b's3cret', bcrypt.gensalt(rounds=4)).decode()}\n")
    rules = (
        f"auth:\n  htpasswd: {users}\n"
        + RULES
        + ("overrides:\n  requests_per_day: 2\n  requests_per_day_unidentified: 0\n")
    )
    proxy = start_proxy(rules_text=rules, at=datetime.now(UTC) + timedelta(minutes=1))
    jdoe = ("--proxy-user", "jdoe:s3cret")
    # the person, not the address, is counted; and nobody unidentified shares their allowance
    got = [post_form(proxy, "request", f"127.0.0.{n}", extra=jdoe) for n in (2, 3, 4)]
    assert got == [200, 200, 429]
    requested = [r for r in proxy.records() if r.get("outcome") == "limit_reached"]
    assert [r["limit"] for r in requested] == ["requests_per_day"]
