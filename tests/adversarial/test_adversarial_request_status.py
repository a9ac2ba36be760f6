"""Issue 22: staff see the answer to their own access request on the block page, and only theirs.

Through the real proxy: a person blocked at www.facebook.com files a request with the page's own
form (curl), and the block page then says it is pending; after `socialguard grant deny --reason`
(a real process) it says denied, with the reason, escaped; after an approval, a page still blocked
by a rule no grant lifts says until when. A second address (another person, curl bound to
127.0.0.2) never sees the first one's request. Nothing of the blocked pages reaches the origin.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

RULES = """\
district:
  name: Test District
  timezone: America/Denver
  contact: "IT help desk, (406) 555-0100"
services:
  facebook:
    name: Facebook
    domains: [facebook.com, fbcdn.net]
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    domains: [facebook.com, fbcdn.net]
rules:
  - id: no-messages
    description: Direct messages stay closed, whatever was granted
    who: [staff]
    what:
      urls: ["https://www.facebook.com/messages"]
    action: block
  - id: staff-social
    description: Individual use of social networking is prohibited
    who: [staff]
    what: {categories: [social]}
    action: block
    bypass: [grant]
default: allow
"""
PAGE = "https://www.facebook.com/groups/pta"
HTML = ("-H", "Accept: text/html")
WAIT_S = 20.0


def sg(proxy: Any, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SUDO_")},
            "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
            "SOCIALGUARD_RULES": str(proxy.rules),
        },
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def answer(page: str) -> str | None:
    """The text of the page's 'Your request for access' card, tags dropped."""
    m = re.search(r'<div class="card answer" role="status">(.*?)</div>', page, re.S)
    return None if m is None else re.sub(r"<[^>]+>", "", m.group(1))


def file_request(proxy: Any, reason: str) -> str:
    page = curl(proxy, PAGE, *HTML)
    token = re.search(r'action="/.socialguard/request".*?name="token" value="([^"]+)"', page.body)
    assert token, page.body
    sent = curl(
        proxy, "https://www.facebook.com/.socialguard/request", "-X", "POST",
        "--data-urlencode", f"token={token.group(1)}", "--data-urlencode", f"reason={reason}",
    )  # fmt: skip
    assert sent.status == 200, sent.body
    rid = re.search(r"\((r-[a-z0-9]+)\)", sent.body)
    assert rid, sent.body
    return rid.group(1)


def card_once(proxy: Any, url: str, wanted: str, *args: str) -> str:
    """Ask until the block page's card says `wanted` (the snapshot is rebuilt off the event loop
    within a second of the change; bounded)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        res = curl(proxy, url, *HTML, *args)
        assert res.status == 403
        text = answer(res.body) or ""
        if wanted in text:
            return text
        assert time.monotonic() < deadline, f"{wanted!r} not on the page; card: {text!r}"
        time.sleep(0.2)


def test_the_block_page_shows_the_persons_own_request_and_its_answer(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC))
    assert answer(curl(proxy, PAGE, *HTML).body) is None

    rid = file_request(proxy, "PTA page update")
    pending = card_once(proxy, PAGE, "waiting for an answer")
    assert rid in pending and "You asked for access at " in pending
    # another person (another address) sees nothing of it
    other = curl(proxy, PAGE, *HTML, "--interface", "127.0.0.2")
    assert other.status == 403 and answer(other.body) is None and rid not in other.body

    sg(proxy, "grant", "deny", rid, "--reason", "Not for <b>individual</b> use")
    denied = card_once(proxy, PAGE, "was denied")
    assert f"Your request ({rid}) was denied: Not for &lt;b&gt;individual&lt;/b&gt; use" in denied

    rid2 = file_request(proxy, "Posting the concert schedule")
    card_once(proxy, PAGE, "waiting for an answer")
    sg(proxy, "grant", "approve", rid2, "--for", "1h")
    approved = card_once(proxy, "https://www.facebook.com/messages/t/1", "was approved until")
    assert rid2 in approved and "another rule applies here" in approved
    assert answer(curl(proxy, PAGE, *HTML, "--interface", "127.0.0.2").body) is None

    assert not origin.saw(b"/messages/t/1")
    # the second address is not granted: /groups/pta never reached the origin
    assert not origin.saw(b"/groups/pta")
