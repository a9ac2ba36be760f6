"""Issue 20: an emergency declared from the CLI for one site opens that site's whole service in
the running proxy, and nothing else.

`socialguard emergency start --site …` runs as a real process on the proxy's state; the proxy
picks the emergency up from the store. Each case asserts on what reached the recording origin and
on what the decision log says: Facebook's page and its CDN reach the origin under the emergency's
id, TikTok's page never does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

RULES = """\
district:
  name: Test District
  timezone: America/Denver
services:
  facebook:
    name: Facebook
    domains: [facebook.com, facebook.net, fbcdn.net]
  tiktok:
    name: TikTok
    domains: [tiktok.com, tiktokcdn.com]
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, facebook.net, fbcdn.net, tiktok.com, tiktokcdn.com]
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
PAGE = "www.facebook.com"
ASSET = "static.xx.fbcdn.net"
OTHER = "www.tiktok.com"
HTML = ("-H", "Accept: text/html")
PICKUP_WAIT_S = 20.0  # bounded; the pickup time itself is a figure in bench/bench_overrides.py


def sg(proxy: Any, *args: str) -> str:
    """The real `socialguard` command on the running proxy's state and rules; its stdout."""
    env = {
        **os.environ,
        "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
        "SOCIALGUARD_RULES": str(proxy.rules),
        "SUDO_USER": "",
    }
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def status(proxy: Any, url: str) -> int:
    """What a client meets: the HTTP status, or 0 when the proxy refused the connection."""
    try:
        return curl(proxy, url, *HTML).status
    except AssertionError:
        return 0


def wait_until_open(proxy: Any, host: str) -> None:
    """Ask until the proxy lets `host` through (bounded): the store's change reached it."""
    deadline = time.monotonic() + PICKUP_WAIT_S
    while status(proxy, f"https://{host}/poll") != 200:
        assert time.monotonic() < deadline, f"{host} still closed after {PICKUP_WAIT_S} s"
        time.sleep(0.1)


def targets(origin: Any) -> list[bytes]:
    """The request target of every request the origin received."""
    return [head.split(b" ", 2)[1] for c in origin.connections for head in c.requests]


def last_request_record(proxy: Any, host: str) -> dict[str, Any]:
    """The decision log's latest request-stage record for `host` (paths are erased in the log)."""
    records = [r for r in proxy.records() if r.get("stage") == "request" and r.get("host") == host]
    assert records, f"no request record for {host}"
    return records[-1]


@pytest.mark.parametrize(
    ("site", "asset_opens"),
    [
        (("--site", "service:facebook"), True),
        (("--site", PAGE), True),  # a domain stands for its whole service
        (("--site", PAGE, "--domain-only"), False),  # unless asked for the domain alone
    ],
    ids=["service", "domain", "domain-only"],
)
def test_an_emergency_for_a_site_opens_its_whole_service_and_nothing_else(
    start_proxy: Any, origin: Any, site: tuple[str, ...], asset_opens: bool
) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    assert status(proxy, f"https://{PAGE}/before") == 403
    assert status(proxy, f"https://{ASSET}/before.css") != 200
    assert b"/before" not in b"".join(targets(origin))

    out = sg(proxy, "emergency", "start", *site, "--reason", "Lockdown: reach families")
    eid = out.split()[0]
    wait_until_open(proxy, PAGE)

    assert status(proxy, f"https://{PAGE}/groups/pta") == 200
    assert status(proxy, f"https://{ASSET}/rsrc/app.css") == (200 if asset_opens else 403)
    assert status(proxy, f"https://{OTHER}/during") == 403

    seen = targets(origin)
    assert b"/groups/pta" in seen
    assert (b"/rsrc/app.css" in seen) is asset_opens
    assert b"/during" not in seen and not origin.saw(f"Host: {OTHER}".encode())

    page = last_request_record(proxy, PAGE)
    assert (page["basis"], page["override_id"], page["service"]) == (
        "emergency",
        eid,
        "facebook",
    )
    other = last_request_record(proxy, OTHER)
    assert (other["action"], other["service"]) == ("block", "tiktok")
    if asset_opens:
        asset = last_request_record(proxy, ASSET)
        assert (asset["basis"], asset["override_id"]) == ("emergency", eid)


FILE_REQUEST = """\
import sys
from socialguard.overrides import Actor, open_store
db, who, site, url, reason = sys.argv[1:6]
store = open_store(db)
try:
    print(store.file_request(
        who=who, site=site, url=url, rule_id="staff-social", decision_id=None, reason=reason,
        client_ip="127.0.0.1", actor=Actor(by=who, source="127.0.0.1"),
    ).id)
finally:
    store.close()
"""


def file_request(proxy: Any, *, who: str, site: str, reason: str) -> str:
    """What the block page's form files for a person blocked at www.facebook.com, in a process
    of its own (as the proxy's form handler and the CLI are to each other)."""
    db = proxy.rules.parent / "state" / "socialguard.db"
    url = f"https://{PAGE}/groups/pta"
    res = subprocess.run(
        [sys.executable, "-c", FILE_REQUEST, str(db), who, site, url, reason],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def wait_for_admin_events(proxy: Any, *actions: str) -> None:
    """Until the store's admin events reach the decision log through the outbox (bounded)."""
    deadline = time.monotonic() + PICKUP_WAIT_S
    while not set(actions) <= {
        r.get("action") for r in proxy.records() if r.get("type") == "admin"
    }:
        assert time.monotonic() < deadline, f"{actions} not in the log after {PICKUP_WAIT_S} s"
        time.sleep(0.1)


def test_an_approved_access_request_opens_the_whole_service_and_the_report_names_it(
    start_proxy: Any, origin: Any, tmp_path: Any
) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    assert status(proxy, f"https://{ASSET}/before.css") != 200
    rid = file_request(proxy, who="ip:127.0.0.1", site="facebook.com", reason="PTA page update")
    assert "facebook.com (all of Facebook)" in sg(proxy, "grant", "requests")
    out = sg(proxy, "grant", "approve", rid, "--for", "1h")
    assert f"approved {rid}: ip:127.0.0.1 may reach facebook.com (all of Facebook) until" in out
    wait_until_open(proxy, PAGE)

    assert status(proxy, f"https://{ASSET}/rsrc/app.css") == 200
    assert status(proxy, f"https://{OTHER}/during") == 403
    seen = targets(origin)
    assert b"/rsrc/app.css" in seen and b"/before.css" not in seen and b"/during" not in seen
    asset = last_request_record(proxy, ASSET)
    assert (asset["basis"], asset["service"]) == ("grant", "facebook")

    sg(proxy, "emergency", "start", "--site", "service:tiktok", "--reason", "Lockdown drill")
    wait_for_admin_events(proxy, "access_requested", "access_approved", "emergency_started")
    html = tmp_path / "report.html"
    report = sg(proxy, "audit", "report", "--log-dir", str(proxy.log_dir), "--html", str(html))
    (request_line,) = [x for x in report.splitlines() if f"  {rid}  " in x]
    # the person as the report's code (issue 23: people pseudonymised unless --names)
    assert re.search(
        r"  Person [A-Z2-7]{6} on facebook\.com \(all of Facebook\): "
        r"PTA page update  \(approved by",
        request_line,
    ), request_line
    (emergency_line,) = [x for x in report.splitlines() if "emergency_started" in x]
    assert " on service:tiktok (all of TikTok)  by " in emergency_line
    page = html.read_text()
    assert "<h2>Access requests</h2>" in page
    assert page.count("facebook.com (all of Facebook)") >= 2  # the request and its grant
    assert "service:tiktok (all of TikTok)" in page
