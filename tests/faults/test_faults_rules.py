"""Rules files written in pieces, cut short, or shrunk: only whole, published versions run.

The proxy's rules file is edited in place; a prefix of it cut at a line boundary is often valid
YAML whose remaining rules allow more than the whole (issue 19: cut after its first rule, an allow,
the shipped policy answered ALLOW in school hours). Each test makes the file such a prefix while
the real proxy serves, and asserts that facebook.com stays blocked, that no request reached the
origin, and that the decision log says block.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from socialguard.policy.publish import APPROVED_FILE, IN_FORCE_FILE, read_in_force
from socialguard.proxy.reload import LoadedPolicy, RulesWatcher, load_checked

harness = sys.modules["socialguard_proxy_harness"]
TEST_RULES: str = harness.TEST_RULES
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

# The harness's rules, with the first rule an allow (as in the shipped policy): cut right after it,
# the file is valid YAML with no `tests:` and no block rule, and `default: allow` opens everything.
CUT_AFTER_ALLOW = TEST_RULES[: TEST_RULES.index("  - id: staff-social-school-hours")]
BLOCKING_TOO = TEST_RULES.replace(
    "rules:\n",
    "rules:\n  - id: no-example\n    description: Example is off limits\n    who: [staff]\n"
    "    what:\n      domains: [example.org]\n    action: block\n",
)
WITHOUT_SOCIAL_RULE = TEST_RULES.replace(
    TEST_RULES[
        TEST_RULES.index("  - id: staff-social-school-hours") : TEST_RULES.index("default:")
    ],
    "",
).replace("expect: block", "expect: allow")


def _facebook_blocked(proxy: Any) -> bool:
    result = harness.curl(proxy, "http://www.facebook.com/")
    return result.status == 403


def _reached_facebook(proxy: Any) -> bool:
    return any(host == "www.facebook.com" for host, _ in proxy.steer.connected)


def _wait_for(logs: list[dict[str, Any]], event: str, seconds: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded: the reload promise is 2 s
        found = [e for e in logs if e["event"] == event]
        if found:
            return found
        time.sleep(0.05)
    return [e for e in logs if e["event"] == event]


def test_file_cut_after_its_first_allow_rule_is_held_and_facebook_stays_blocked(
    start_proxy: Any,
) -> None:
    proxy = start_proxy()
    version = proxy.addon.policy.version
    assert _facebook_blocked(proxy)
    with structlog.testing.capture_logs() as logs:
        with proxy.rules.open("r+") as f:  # truncated in place, as a crashed copy leaves it
            f.truncate(len(CUT_AFTER_ALLOW.encode()))
        rejected = _wait_for(logs, "rules_rejected")
        statuses = [harness.curl(proxy, "http://www.facebook.com/").status for _ in range(5)]
    assert rejected, "a cut file must be reported, not loaded"
    assert any("staff-social-school-hours" in err for err in rejected[0]["errors"])
    assert not [e for e in logs if e["event"] == "rules_reloaded"]
    assert statuses == [403] * 5
    assert proxy.addon.policy.version == version
    assert not _reached_facebook(proxy)
    blocks = [r for r in proxy.records() if r.get("host") == "www.facebook.com"]
    assert blocks and {r["action"] for r in blocks} == {"block"}


def test_editor_writing_in_two_chunks_never_opens_facebook(start_proxy: Any) -> None:
    proxy = start_proxy()
    new = BLOCKING_TOO.encode()
    cut = len(BLOCKING_TOO[: BLOCKING_TOO.index("  - id: staff-social-school-hours")].encode())
    statuses: list[int] = []
    done = threading.Event()

    def ask() -> None:
        while not done.is_set():  # bounded by the writer below, which sets `done`
            statuses.append(harness.curl(proxy, "http://www.facebook.com/").status)
            time.sleep(0.1)

    asker = threading.Thread(target=ask)
    with structlog.testing.capture_logs() as logs:
        asker.start()
        fd = os.open(proxy.rules, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, new[:cut])  # the first chunk: everything up to the blocking rule
            time.sleep(1.5)
            os.write(fd, new[cut:])
        finally:
            os.close(fd)
        reloaded = _wait_for(logs, "rules_reloaded")
        time.sleep(0.3)
        done.set()
        asker.join(timeout=30)
    assert reloaded, "the whole file, once written, is taken"
    assert statuses and set(statuses) == {403}, statuses
    assert not _reached_facebook(proxy)
    assert harness.curl(proxy, "http://www.example.org/").status == 403  # the new rule is in force


def test_removing_a_rule_needs_rules_apply_which_shows_the_diff(start_proxy: Any) -> None:
    proxy = start_proxy()
    state = proxy.rules.parent / "state"
    assert read_in_force(state) is not None, "the proxy records the version in force"
    with structlog.testing.capture_logs() as logs:
        proxy.rules.write_text(WITHOUT_SOCIAL_RULE)
        rejected = _wait_for(logs, "rules_rejected")
    assert rejected and "rules apply" in rejected[0]["errors"][0]
    assert _facebook_blocked(proxy)

    res = subprocess.run(
        [sys.executable, "-m", "socialguard", "rules", "apply", str(proxy.rules),
         "--state", str(state), "--yes", "--by", "it-admin"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "- rule staff-social-school-hours" in res.stdout
    assert (state / APPROVED_FILE).is_file()
    with structlog.testing.capture_logs() as logs:
        reloaded = _wait_for(logs, "rules_reloaded")
    assert reloaded, "an approved version is taken without another edit"
    assert harness.curl(proxy, "http://www.facebook.com/").status == 200


def test_rules_apply_refuses_without_yes_when_rules_are_lost(start_proxy: Any) -> None:
    proxy = start_proxy()
    state = proxy.rules.parent / "state"
    proxy.rules.write_text(WITHOUT_SOCIAL_RULE)
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", "rules", "apply", str(proxy.rules),
         "--state", str(state)],
        input="n\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert "- rule staff-social-school-hours" in res.stdout
    assert not (state / APPROVED_FILE).exists()


def test_restart_on_a_shrunken_file_is_refused(tmp_path: Path) -> None:
    rules, state = tmp_path / "rules.yaml", tmp_path / "state"
    rules.write_text(TEST_RULES)
    first = load_checked(rules, state=state)
    from socialguard.proxy.reload import record_in_force

    record_in_force(state, first, harness.SCHOOL_HOURS)
    assert (state / IN_FORCE_FILE).is_file()
    rules.write_text(CUT_AFTER_ALLOW)
    with pytest.raises(Exception, match="removes rules staff-social-school-hours"):
        load_checked(rules, state=state)


def _watch(rules: Path, state: Path) -> tuple[RulesWatcher, list[LoadedPolicy], list[list[str]]]:
    loaded: list[LoadedPolicy] = []
    rejected: list[list[str]] = []
    current = load_checked(rules, state=state)
    w = RulesWatcher(rules, current, loaded.append, rejected.append, settle_s=0.0, state=state)
    return w, loaded, rejected


def test_shipped_policy_cut_at_line_127_is_held(tmp_path: Path) -> None:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    rules = tmp_path / "rules" / "policy.yaml"
    watcher, loaded, rejected = _watch(rules, tmp_path / "state")
    lines = rules.read_text().splitlines(keepends=True)
    cut = lines.index("  - id: staff-social-uploads\n")  # after the first rule (line 127 once)
    rules.write_text("".join(lines[:cut]))
    for _ in range(3):  # see the change, let it settle, try it
        watcher.poll_once()
    assert not loaded
    assert rejected and any("removes rules" in e for e in rejected[0])


def test_truncated_domain_list_is_held(tmp_path: Path) -> None:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    rules = tmp_path / "rules" / "policy.yaml"
    watcher, loaded, rejected = _watch(rules, tmp_path / "state")
    social = tmp_path / "rules" / "lists" / "social.txt"
    lines = social.read_text().splitlines(keepends=True)
    social.write_text("".join(lines[: len(lines) // 2]))
    for _ in range(3):
        watcher.poll_once()
    assert not loaded
    assert rejected and any("shrinks category social" in e for e in rejected[0])


def test_change_is_taken_only_after_the_file_stays_still(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    loaded: list[LoadedPolicy] = []
    current = load_checked(rules)
    w = RulesWatcher(rules, current, loaded.append, lambda e: None, settle_s=3600.0)
    rules.write_text(BLOCKING_TOO)
    for _ in range(3):
        w.poll_once()
    assert not loaded, "a file that changed moments ago may still be being written"


def test_check_now_takes_a_complete_edit_without_waiting_for_it_to_settle(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    loaded: list[LoadedPolicy] = []
    w = RulesWatcher(rules, load_checked(rules), loaded.append, lambda e: None, settle_s=3600.0)
    rules.write_text(BLOCKING_TOO)
    w.check_now()
    w.poll_once()
    assert len(loaded) == 1


def test_check_now_still_holds_a_version_that_loses_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    loaded: list[LoadedPolicy] = []
    rejected: list[list[str]] = []
    w = RulesWatcher(rules, load_checked(rules), loaded.append, rejected.append, settle_s=3600.0)
    rules.write_text(CUT_AFTER_ALLOW)
    w.check_now()
    w.poll_once()
    assert not loaded and rejected


def test_sighup_asks_for_a_rules_check_and_does_not_stop_the_proxy(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    err = tmp_path / "err.txt"
    with err.open("w") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
             "--certs", str(tmp_path / "certs"), "--state", str(tmp_path / "state"),
             "--listen", "127.0.0.1:0", "--node", "hup"],
            stdout=subprocess.DEVNULL, stderr=errf, env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
    try:
        for _ in range(600):  # bounded: a minute
            if "listening on" in err.read_text():
                break
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):  # bounded: 10 s
            if "rules_check_requested" in err.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "SIGHUP stopped the proxy"
        assert "rules_check_requested" in err.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rules_check_warns_about_a_file_without_tests(tmp_path: Path) -> None:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    rules = tmp_path / "rules" / "policy.yaml"
    lines = rules.read_text().splitlines(keepends=True)
    rules.write_text("".join(lines[: lines.index("  - id: staff-social-uploads\n")]))
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", "rules", "check", str(rules)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "warning: no `tests:`" in res.stderr


def test_saving_the_same_content_again_hands_nothing_over(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    loaded: list[LoadedPolicy] = []
    w = RulesWatcher(rules, load_checked(rules), loaded.append, lambda e: None, settle_s=0.0)
    rules.write_text(TEST_RULES)  # a new inode/mtime, the same bytes
    os.utime(rules, ns=(1, 1))
    for _ in range(3):
        w.poll_once()
    assert loaded == []
