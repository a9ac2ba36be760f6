"""A grant issued while the proxy runs: it takes effect without a restart, and the administrator's
change lands in the proxy's decision log (the store's outbox, pumped by the proxy)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from conftest import SCHOOL_HOURS, curl  # type: ignore[import-not-found]
from socialguard import paths
from socialguard.overrides import Actor, open_store

pytestmark = pytest.mark.e2e


def test_grant_lifts_the_block_and_is_logged(start_proxy: Any) -> None:
    proxy = start_proxy()
    assert curl(proxy, "http://www.facebook.com/").status == 403
    store = open_store(paths.store_path(proxy.log_dir.parent / "state"))
    try:
        grant = store.add_grant(
            "ip:127.0.0.1", ("facebook.com",), SCHOOL_HOURS - timedelta(hours=1),
            SCHOOL_HOURS + timedelta(hours=1), "principal asked for the district page",
            Actor(by="principal", source="test"),
        )  # fmt: skip
    finally:
        store.close()
    deadline = time.monotonic() + 2.0  # the promise: in force within 2 s
    status = curl(proxy, "http://www.facebook.com/").status
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = curl(proxy, "http://www.facebook.com/").status
    assert status == 200
    allowed = [r for r in proxy.records() if r.get("basis") == "grant"]
    assert allowed and allowed[-1]["override_id"] == grant.id
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not [
        r for r in proxy.records() if r.get("type") == "admin"
    ]:
        time.sleep(0.1)
    admin = [r for r in proxy.records() if r.get("type") == "admin"]
    assert admin and admin[0]["by"] == "principal"
