"""Overrides through the real proxy: a grant from the CLI opens the site in the running proxy, a
revoke closes it, and a real headless Chromium meets the block page, declares an emergency, and
lands
on the (loopback) site; a forged token is refused. Uses the proxy tests' harness (embedded proxy,
loopback upstreams, curl) loaded from tests/proxy/conftest.py."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

_HARNESS_PATH = Path(__file__).resolve().parents[1] / "proxy" / "conftest.py"
_spec = importlib.util.spec_from_file_location("sg_overrides_proxy_harness", _HARNESS_PATH)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness  # dataclasses look their module up while the harness loads
_spec.loader.exec_module(harness)

# the harness's fixtures, made available to this module
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
overrides:
  grant_max: 8h
  emergency_minutes: 30
  emergency_per_day: 2
default: allow
"""
HTML = ("-H", "Accept: text/html")
PICKUP_WAIT_S = 20.0  # bounded wait; the pickup time itself is a figure in bench/bench_overrides.py


def sg(proxy: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `socialguard` command, on the running proxy's state and rules."""
    env = {
        **os.environ,
        "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
        "SOCIALGUARD_RULES": str(proxy.rules),
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
    return res


def wait_for_status(proxy: Any, url: str, status: int) -> float:
    """Ask again until the proxy answers `status`; return the seconds it took (bounded)."""
    start = time.monotonic()
    while True:
        got = curl(proxy, url, *HTML).status
        if got == status:
            return time.monotonic() - start
        assert time.monotonic() - start < PICKUP_WAIT_S, f"still {got} after {PICKUP_WAIT_S} s"
        time.sleep(0.1)


def test_grant_then_revoke_from_the_cli_reach_the_running_proxy(start_proxy: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    assert curl(proxy, "https://www.facebook.com/", *HTML).status == 403
    gid = sg(
        proxy,
        "grant",
        "add",
        "--who",
        "ip:127.0.0.1",
        "--site",
        "facebook.com",
        "--for",
        "2h",
        "--reason",
        "Yearbook page",
    ).stdout.split()[0]
    wait_for_status(proxy, "https://www.facebook.com/", 200)
    allowed = [r for r in proxy.records() if r.get("basis") == "grant"]
    assert allowed and allowed[-1]["override_id"] == gid
    assert curl(proxy, "https://www.instagram.com/", *HTML).status == 403  # only the granted site
    sg(proxy, "grant", "revoke", gid, "--reason", "Done")
    wait_for_status(proxy, "https://www.facebook.com/", 403)
    # the hands behind both changes reach the decision log through the outbox
    deadline = time.monotonic() + PICKUP_WAIT_S
    while time.monotonic() < deadline:
        actions = [r.get("action") for r in proxy.records() if r.get("type") == "admin"]
        if "grant_revoked" in actions:
            break
        time.sleep(0.1)
    assert actions[-2:] == ["grant_added", "grant_revoked"]


def test_a_district_wide_emergency_from_the_cli_lifts_the_block_until_stopped(
    start_proxy: Any,
) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    assert curl(proxy, "https://www.tiktok.com/", *HTML).status == 403
    eid = sg(proxy, "emergency", "start", "--reason", "Lockdown").stdout.split()[0]
    wait_for_status(proxy, "https://www.tiktok.com/", 200)
    lifted = [r for r in proxy.records() if r.get("basis") == "emergency"]
    assert lifted and lifted[-1]["override_id"] == eid
    sg(proxy, "emergency", "stop")
    wait_for_status(proxy, "https://www.tiktok.com/", 403)


# ------------------------------------------------------------------------- headless Chromium


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Cdp:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, proxy_port: int, profile: Path) -> None:
        to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, from_chrome_w = os.pipe()

        def fds() -> None:
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{proxy_port}",
                "--proxy-bypass-list=<-loopback>",
                "--ignore-certificate-errors",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,  # noqa: PLW1509 - dup2 onto the pipe fds must run in the child
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer in time"
            ready, _, _ = select.select([self._from_chrome_r], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome_r, 1 << 16)
                assert chunk, "Chromium closed the pipe"
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                assert "error" not in reply, reply["error"]
                return reply.get("result")
            self.events.append(reply)

    def attach_page(self) -> None:
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )["sessionId"]
        self.call("Page.enable")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def wait_for_event(self, method: str, after: int, timeout: float = 30) -> int:
        """The index in self.events of the first `method` event at or after `after`, reading on."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for i in range(seen, len(self.events)):
                if self.events[i].get("method") == method:
                    return i
            seen = len(self.events)
            self.events.append(self._read_message(deadline))

    def load(self, start: Callable[[], Any]) -> str:
        """Starts a navigation, waits until the new document has loaded, and returns its text.

        Reading the text while a navigation is under way raced it: the old document's text, a
        half-parsed new one, or "Execution context was destroyed" (flaky 1 run in 2). The new
        document is the one whose main frame navigated after `start`, and its load event fired.
        """
        mark = len(self.events)
        start()
        navigated = self.wait_for_event("Page.frameNavigated", after=mark)
        while self.events[navigated]["params"]["frame"].get("parentId"):  # wait for the main frame
            navigated = self.wait_for_event("Page.frameNavigated", after=navigated + 1)
        self.wait_for_event("Page.loadEventFired", after=navigated + 1)
        text: str = self.evaluate("document.body ? document.body.innerText : ''") or ""
        return text

    def navigate(self, url: str) -> str:
        """Opens `url` and returns the loaded page's text."""
        return self.load(lambda: self.call("Page.navigate", {"url": url}))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        os.close(self._to_chrome_w)
        os.close(self._from_chrome_r)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    opened: list[Cdp] = []

    def open_for(proxy: Any) -> Cdp:
        cdp = Cdp(proxy.port, tmp_path / f"profile{len(opened)}")
        opened.append(cdp)
        cdp.attach_page()
        return cdp

    yield open_for
    for c in opened:
        c.close()


SUBMIT = """(() => {{
  const form = document.querySelector('form[action="/.socialguard/{form}"]');
  form.querySelector('textarea').value = {reason};
  {tamper}
  form.submit();
  return true;
}})()"""


@pytest.mark.browser
def test_chromium_declares_an_emergency_from_the_block_page(start_proxy: Any, browser: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    page = browser(proxy)
    text = page.navigate("https://www.facebook.com/groups/pta")
    assert "I declare an emergency" in text and "Ask administration for access" in text
    submit = SUBMIT.format(form="emergency", reason=json.dumps("Lockdown notice"), tamper="")
    confirmed = page.load(lambda: page.evaluate(submit))
    assert "Emergency access until" in confirmed and "Continue to" in confirmed
    go_on = "document.querySelector('a.tap[href=\"https://www.facebook.com/groups/pta\"]').click()"
    landed = page.load(lambda: page.evaluate(go_on))
    assert "upstream ok" in landed
    assert "host=www.facebook.com" in landed and "path=/groups/pta" in landed
    assert page.evaluate("location.href") == "https://www.facebook.com/groups/pta"
    # the decision log holds the emergency: the allowed request, and the admin event
    allowed = [r for r in proxy.records() if r.get("basis") == "emergency"]
    assert allowed and allowed[-1]["host"] == "www.facebook.com"
    (review,) = json.loads(sg(proxy, "emergency", "review", "--json").stdout)
    assert (review["self_declared"], review["sites"], review["reason"]) == (
        True,
        ["facebook.com"],
        "Lockdown notice",
    )
    deadline = time.monotonic() + PICKUP_WAIT_S
    while time.monotonic() < deadline and not any(
        r.get("action") == "emergency_self_declared" for r in proxy.records()
    ):
        time.sleep(0.1)
    assert any(r.get("action") == "emergency_self_declared" for r in proxy.records())


@pytest.mark.browser
def test_chromium_with_a_forged_token_is_refused(start_proxy: Any, browser: Any) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    page = browser(proxy)
    assert "I declare an emergency" in page.navigate("https://www.instagram.com/")
    forge = "form.querySelector('input[name=token]').value = 'eyJmb3JnZWQiOnRydWV9.AAAA';"
    submit = SUBMIT.format(form="emergency", reason=json.dumps("x"), tamper=forge)
    assert "This form has expired" in page.load(lambda: page.evaluate(submit))
    assert json.loads(sg(proxy, "emergency", "review", "--json").stdout) == []
    refused = [r for r in proxy.records() if r.get("type") == "form"]
    assert refused and refused[-1]["outcome"] == "refused" and refused[-1]["why"] == "forged"
    assert curl(proxy, "https://www.instagram.com/", *HTML).status == 403
