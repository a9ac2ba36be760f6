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


def open_form(proxy: Any, form: str, address: str, extra: tuple[str, ...] = ()) -> str | None:
    """Open the block page from `address`: the token of its `form`, or None when the page does
    not offer it (today's allowance is used up). `extra`: more curl arguments (credentials)."""
    page = curl(proxy, "https://www.facebook.com/some/page", *HTML, "--interface", address, *extra)
    assert page.status == 403, "the site is blocked for this address"
    tokens = dict(
        re.findall(r'action="/\.socialguard/(\w+)".*?name="token" value="([^"]+)"', page.body)
    )
    return tokens.get(form)


def send_form(
    proxy: Any,
    form: str,
    token: str | None,
    address: str,
    *,
    reason: str = "Need it for class",
    extra: tuple[str, ...] = (),
) -> int:
    """Post a form opened earlier (a page loaded before the allowance ran out still has one)."""
    assert token, f"the block page offered the {form} form"
    return curl(
        proxy,
        f"https://www.facebook.com/.socialguard/{form}",
        "--data-urlencode", f"token={token}",
        "--data-urlencode", f"reason={reason}",
        "--interface", address, *extra,
    ).status  # fmt: skip


def post_form(
    proxy: Any,
    form: str,
    address: str,
    reason: str = "Need it for class",
    extra: tuple[str, ...] = (),
) -> int:
    """Open the block page from `address` and post its `form`; the answer's status."""
    return send_form(
        proxy, form, open_form(proxy, form, address, extra), address, reason=reason, extra=extra
    )


def post_opened_first(
    proxy: Any, form: str, addresses: list[str], extra: tuple[str, ...] = ()
) -> list[int]:
    """Open every page first, then post each: the attacker keeps pages loaded before the limit
    was reached, so the server, not the page, must refuse."""
    tokens = [open_form(proxy, form, a, extra) for a in addresses]
    return [
        send_form(proxy, form, t, a, extra=extra) for t, a in zip(tokens, addresses, strict=True)
    ]


def store_rows(proxy: Any, table: str) -> int:
    db = Path(proxy.rules.parent / "state" / "socialguard.db")
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def outcomes(proxy: Any) -> list[str]:
    return [str(r.get("outcome")) for r in proxy.records() if r.get("type") == "form"]


def test_access_requests_from_one_address_are_limited_per_day(start_proxy: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    statuses = post_opened_first(proxy, "request", ["127.0.0.1"] * 8)
    assert statuses == [200] * 5 + [429] * 3  # requests_per_day: 5 by default
    assert open_form(proxy, "request", "127.0.0.1") is None, "a fresh page offers no more"
    assert store_rows(proxy, "access_requests") == 5
    assert outcomes(proxy) == ["access_requested"] * 5 + ["limit_reached"] * 3


def test_unidentified_addresses_share_one_daily_emergency_allowance(start_proxy: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    addresses = [f"127.0.0.{n}" for n in range(2, 12)]  # ten addresses, nobody the proxy can name
    statuses = post_opened_first(proxy, "emergency", addresses)
    # emergency_per_day_unidentified: 5 by default, whatever the number of addresses
    assert statuses == [200] * 5 + [429] * 5
    assert store_rows(proxy, "emergencies") == 5
    assert outcomes(proxy) == ["emergency_declared"] * 5 + ["limit_reached"] * 5


def test_the_limits_are_read_from_the_rules(start_proxy: Any) -> None:
    rules = RULES + (
        "overrides:\n  emergency_per_day: 1\n  emergency_per_day_unidentified: 2\n"
        "  requests_per_day: 1\n  requests_per_day_unidentified: 2\n"
    )
    proxy = start_proxy(rules_text=rules, at=datetime.now(UTC) + timedelta(minutes=1))
    # one address may ask once; three addresses together twice
    assert post_opened_first(proxy, "request", ["127.0.0.2"] * 2) == [200, 429]
    assert post_opened_first(proxy, "request", ["127.0.0.3", "127.0.0.4"]) == [200, 429]
    emergencies = ["127.0.0.5", "127.0.0.6", "127.0.0.7"]
    assert post_opened_first(proxy, "emergency", emergencies) == [200, 200, 429]


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
    got = post_opened_first(proxy, "request", [f"127.0.0.{n}" for n in (2, 3, 4)], extra=jdoe)
    assert got == [200, 200, 429]
    requested = [r for r in proxy.records() if r.get("outcome") == "limit_reached"]
    assert [r["limit"] for r in requested] == ["requests_per_day"]
