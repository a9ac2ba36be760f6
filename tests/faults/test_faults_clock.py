"""Clock steps, injected through the proxy's clock (ManualClock), while it serves.

School hours, grant ends and emergency ends are wall-clock facts, so a step of the clock moves them:
forward past 16:00 opens social sites, back into school hours closes them again, and a grant is
honoured exactly while the (stepped) clock is inside it. Every answer is in the decision log.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

import pytest

from socialguard import paths
from socialguard.overrides import Actor, open_store

harness = sys.modules["socialguard_proxy_harness"]
SCHOOL_HOURS = harness.SCHOOL_HOURS  # Tuesday 10:00 in America/Denver
EVENING = harness.EVENING

pytestmark = pytest.mark.e2e


def _status(proxy: Any) -> int:
    return int(harness.curl(proxy, "http://www.facebook.com/").status)


def _decisions(proxy: Any) -> list[str]:
    return [
        r["action"]
        for r in proxy.records()
        if r.get("host") == "www.facebook.com" and r.get("stage") == "request"
    ]


def test_stepping_the_clock_across_school_hours_moves_the_answer_both_ways(
    start_proxy: Any,
) -> None:
    proxy = start_proxy(at=SCHOOL_HOURS)
    seen = [_status(proxy)]
    proxy.clock.set(EVENING)  # a step forward of ten hours
    seen.append(_status(proxy))
    proxy.clock.set(SCHOOL_HOURS)  # and back (an NTP correction, a wrong manual setting undone)
    seen.append(_status(proxy))
    assert seen == [403, 200, 403]
    assert _decisions(proxy) == ["block", "allow", "block"]


def test_grant_is_honoured_only_while_the_stepped_clock_is_inside_it(start_proxy: Any) -> None:
    proxy = start_proxy(at=SCHOOL_HOURS)
    store = open_store(paths.store_path(proxy.log_dir.parent / "state"))
    try:
        grant = store.add_grant(
            "ip:127.0.0.1", ("facebook.com",), SCHOOL_HOURS - timedelta(minutes=5),
            SCHOOL_HOURS + timedelta(minutes=30), "yearbook", Actor(by="principal", source="t"),
        )  # fmt: skip
    finally:
        store.close()
    deadline = time.monotonic() + 15  # the 2 s promise, with room for a loaded machine
    while _status(proxy) != 200 and time.monotonic() < deadline:  # bounded: the 2 s promise
        time.sleep(0.1)
    seen = [_status(proxy)]
    proxy.clock.set(SCHOOL_HOURS + timedelta(minutes=45))  # step past the grant's end
    seen.append(_status(proxy))
    proxy.clock.set(SCHOOL_HOURS - timedelta(minutes=20))  # step back before its start
    seen.append(_status(proxy))
    proxy.clock.set(SCHOOL_HOURS + timedelta(minutes=10))  # back inside it
    seen.append(_status(proxy))
    assert seen == [200, 403, 403, 200]
    granted = [r for r in proxy.records() if r.get("basis") == "grant"]
    assert granted and {r["override_id"] for r in granted} == {grant.id}
