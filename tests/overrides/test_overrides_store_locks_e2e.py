"""The running proxy keeps seeing CLI grants after a second store was opened and closed in its
process (issue 19): the lead's report, through the real proxy, the real `socialguard grant`
command and a real store file. See test_overrides_store_locks.py for why it could not."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from socialguard.overrides import open_store

_HARNESS_PATH = Path(__file__).resolve().parents[1] / "proxy" / "conftest.py"
_spec = importlib.util.spec_from_file_location("sg_store_locks_proxy_harness", _HARNESS_PATH)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness  # dataclasses look their module up while the harness loads
_spec.loader.exec_module(harness)

upstream_cert = harness.upstream_cert
upstreams = harness.upstreams
ca_dir = harness.ca_dir
start_proxy = harness.start_proxy
curl = harness.curl

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
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
overrides:
  grant_max: 8h
default: allow
"""
HTML = ("-H", "Accept: text/html")
PICKUP_WAIT_S = 20.0  # bounded: the promise is 2 s; room for a loaded machine


def _grant(proxy: Any, site: str) -> str:
    env = {
        **os.environ,
        "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
        "SOCIALGUARD_RULES": str(proxy.rules),
    }
    done = subprocess.run(
        [sys.executable, "-m", "socialguard", "grant", "add", "--who", "ip:127.0.0.1",
         "--site", site, "--for", "2h", "--reason", "Yearbook page"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def _status_within(proxy: Any, url: str, status: int) -> int:
    """The proxy's answer once it is `status`, or the last one after the bounded wait."""
    deadline = time.monotonic() + PICKUP_WAIT_S
    got = curl(proxy, url, *HTML).status
    while got != status and time.monotonic() < deadline:
        time.sleep(0.1)
        got = curl(proxy, url, *HTML).status
    return got


def test_cli_grants_reach_the_proxy_after_a_second_store_in_its_process(
    start_proxy: Any,
) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    assert curl(proxy, "https://www.facebook.com/", *HTML).status == 403
    # a second store on the same file in the proxy's process, used and closed (what the addon
    # does when it is reconfigured onto the same state, or any in-process tool)
    second = open_store(proxy.rules.parent / "state" / "socialguard.db")
    second.change_counter()
    second.close()  # type: ignore[attr-defined]
    first = _grant(proxy, "instagram.com")  # this process's close took the WAL away, before
    assert _status_within(proxy, "https://www.instagram.com/", 200) == 200
    gid = _grant(proxy, "facebook.com")
    assert _status_within(proxy, "https://www.facebook.com/", 200) == 200, "grant never seen"
    granted = {r["override_id"] for r in proxy.records() if r.get("basis") == "grant"}
    assert granted == {first, gid}
