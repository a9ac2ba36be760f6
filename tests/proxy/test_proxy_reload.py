"""Hot reload on the running proxy: good edits apply within 2 s, bad ones change nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
import structlog.testing

from conftest import EVENING, TEST_RULES, curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

BLOCK_EXAMPLE = TEST_RULES.replace(
    "rules:\n",
    "rules:\n  - id: no-example\n    description: Example is off limits\n    who: [staff]\n"
    "    what:\n      domains: [example.org]\n    action: block\n",
)
RELOAD_DEADLINE_S = 2.0


def _status_after_edit(proxy: Any, url: str, want: int) -> int:
    """Poll (bounded by the 2 s the issue promises) until `url` answers `want`; the last status."""
    deadline = time.monotonic() + RELOAD_DEADLINE_S
    status = curl(proxy, url).status
    while status != want and time.monotonic() < deadline:
        time.sleep(0.1)
        status = curl(proxy, url).status
    return status


def _rewrite(path: Any, text: str) -> None:
    path.write_text(text)


def test_good_edit_is_in_force_within_two_seconds(start_proxy: Any) -> None:
    proxy = start_proxy(at=EVENING)
    before = proxy.addon.policy.version
    assert curl(proxy, "http://www.example.org/").status == 200
    _rewrite(proxy.rules, BLOCK_EXAMPLE)
    assert _status_after_edit(proxy, "http://www.example.org/", 403) == 403
    assert proxy.addon.policy.version != before


def test_broken_edit_changes_nothing_and_is_logged(start_proxy: Any) -> None:
    proxy = start_proxy(at=EVENING)
    version = proxy.addon.policy.version
    with structlog.testing.capture_logs() as logs:
        _rewrite(proxy.rules, TEST_RULES.replace("action: block", "action: blok"))
        deadline = time.monotonic() + RELOAD_DEADLINE_S
        while not any(e["event"] == "rules_rejected" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.05)
    rejected = [e for e in logs if e["event"] == "rules_rejected"]
    assert rejected, "a broken rules file must be reported"
    assert any("blok" in err for err in rejected[0]["errors"])
    assert proxy.addon.policy.version == version
    assert curl(proxy, "http://www.example.org/").status == 200


def test_edit_whose_own_tests_fail_is_rejected_naming_the_test(start_proxy: Any) -> None:
    proxy = start_proxy(at=EVENING)
    version = proxy.addon.policy.version
    failing = BLOCK_EXAMPLE + (
        '  - {url: "http://www.example.org/", client: 127.0.0.1, at: "2026-12-01T20:00",'
        " expect: allow}\n"
    )
    with structlog.testing.capture_logs() as logs:
        _rewrite(proxy.rules, failing)
        deadline = time.monotonic() + RELOAD_DEADLINE_S
        while not any(e["event"] == "rules_rejected" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.05)
    rejected = [e for e in logs if e["event"] == "rules_rejected"]
    assert rejected
    assert any("www.example.org" in err for err in rejected[0]["errors"])
    assert proxy.addon.policy.version == version
    assert curl(proxy, "http://www.example.org/").status == 200


def test_next_good_file_after_a_broken_one_is_picked_up(start_proxy: Any) -> None:
    proxy = start_proxy(at=EVENING)
    _rewrite(proxy.rules, "rules: [\n")
    _rewrite(proxy.rules, BLOCK_EXAMPLE)
    assert _status_after_edit(proxy, "http://www.example.org/", 403) == 403
