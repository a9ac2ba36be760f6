"""Issue 22: a grant the administrator's role refuses lets nobody through.

The real `socialguard grant add` runs as a process on the running proxy's state and rules, as
root under sudo for an administrator whose role covers another school (SUDO_UID names them), and
as root claiming another name with --by. Each is refused (exit 5); the proxy keeps blocking the
person, the recording origin receives nothing of theirs, and the decision log holds the refusal as
an `admin_refused` event beside the block.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

NOBODY = pwd.getpwnam("nobody")
RULES = f"""\
district:
  name: Test District
  timezone: America/Denver
services:
  facebook:
    name: Facebook
    domains: [facebook.com, fbcdn.net]
groups:
  school-a:
    networks: [127.0.0.0/8, "::1/128"]
  school-b:
    networks: [10.2.0.0/16]
categories:
  social:
    domains: [facebook.com, fbcdn.net]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [school-a, school-b]
    what: {{categories: [social]}}
    action: block
    bypass: [grant, emergency]
default: allow
roles:
  school-b-admins:
    members: [user:{NOBODY.pw_name}]
    groups: [school-b]
"""
PAGE = "www.facebook.com"
PICKUP_WAIT_S = 20.0


def sg(proxy: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SUDO_")},
            "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
            "SOCIALGUARD_RULES": str(proxy.rules),
            **env,
        },
    )


def admin_records(proxy: Any, action: str) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("type") == "admin" and r.get("action") == action]


def test_a_refused_grant_lets_nobody_through(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    grant = ("grant", "add", "--who", "ip:127.0.0.1", "--site", "facebook.com", "--for", "1h")
    as_nobody = {"SUDO_UID": str(NOBODY.pw_uid)}
    refused = sg(proxy, *grant, "--reason", "Yearbook", **as_nobody)
    assert refused.returncode == 5, refused.stderr
    assert "127.0.0.1 is not in its groups (school-b)" in refused.stderr
    claimed = sg(proxy, *grant, "--reason", "Yearbook", "--by", "supt.garcia", **as_nobody)
    assert claimed.returncode == 5 and "--by supt.garcia" in claimed.stderr

    deadline = time.monotonic() + PICKUP_WAIT_S
    while len(admin_records(proxy, "admin_refused")) < 2:  # both reached the log
        assert time.monotonic() < deadline, "admin_refused not in the decision log"
        time.sleep(0.1)
    answer = curl(proxy, f"https://{PAGE}/groups/pta", "-H", "Accept: text/html")
    assert answer.status == 403
    assert not origin.saw(b"/groups/pta") and not origin.saw(f"Host: {PAGE}".encode())
    events = admin_records(proxy, "admin_refused")
    assert {e["by"] for e in events} == {NOBODY.pw_name}
    assert [e["details"]["attempted"] for e in events] == ["grant_add", "grant_add"]
    assert events[1]["details"]["claimed"] == "supt.garcia"
    assert not admin_records(proxy, "grant_added")
    blocks = [r for r in proxy.records() if r.get("host") == PAGE and r.get("stage") == "request"]
    assert blocks and blocks[-1]["action"] == "block" and blocks[-1]["basis"] == "rule"


def test_rules_without_roles_cannot_stand_in_for_the_rules_in_force(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    own = proxy.rules.parent / "mine.yaml"  # the actor's own copy, without roles
    own.write_text(RULES.split("roles:", maxsplit=1)[0])
    grant = ("grant", "add", "--who", "ip:127.0.0.1", "--site", "facebook.com", "--for", "1h")
    r = sg(proxy, *grant, "--reason", "Mine", "--rules", str(own), SUDO_UID=str(NOBODY.pw_uid))
    assert r.returncode == 5, r.stderr
    assert "not in its groups (school-b)" in r.stderr
    assert curl(proxy, f"https://{PAGE}/mine", "-H", "Accept: text/html").status == 403
    assert not origin.saw(b"/mine")


def test_a_rules_file_in_force_that_went_missing_refuses_the_change_not_falls_back(
    start_proxy: Any, origin: Any
) -> None:
    """Moving the rules in force away (or a typo in the unit's path) must not let `--rules` name
    a file without roles: the change is refused until the roles that bind it can be read."""
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    own = proxy.rules.parent / "mine.yaml"
    own.write_text(RULES.split("roles:", maxsplit=1)[0])
    kept = proxy.rules.read_text()
    proxy.rules.unlink()  # the proxy keeps its last good policy; the record still names the file
    try:
        grant = ("grant", "add", "--who", "ip:127.0.0.1", "--site", "facebook.com", "--for", "1h")
        r = sg(proxy, *grant, "--reason", "Mine", "--rules", str(own), SUDO_UID=str(NOBODY.pw_uid))
        assert r.returncode == 2, r.stderr
        assert "the rules in force cannot be read" in r.stderr
        assert curl(proxy, f"https://{PAGE}/mine", "-H", "Accept: text/html").status == 403
        assert not origin.saw(b"/mine")
        assert not admin_records(proxy, "grant_added")
    finally:
        proxy.rules.write_text(kept)
