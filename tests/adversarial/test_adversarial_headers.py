"""Issue 17, item 9: every page the proxy answers itself forbids framing, sniffing and caching.

The block page carries the emergency button: framed by another site, a person can be tricked into
pressing it (clickjacking). Each answer the proxy makes (block page in every format, form answers,
407, the internal-error page) is fetched through the real proxy with curl; Chromium then shows that
a page framing the block page does not display it, and that the page itself still renders under
its policy.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conftest import TEST_RULES, curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
EXPECTED = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer makes Chromium post `Origin: null`
    "cache-control": "no-store",
}
BLOCKED = "https://www.facebook.com/groups/pta"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _assert_guarded(headers: dict[str, str]) -> None:
    assert {k: headers.get(k) for k in EXPECTED} == EXPECTED


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("text/html", "text/html"),
        ("application/json", "application/json"),
        ("*/*", "text/plain"),
    ],
)
def test_the_block_page_in_every_format_forbids_framing_and_sniffing(
    start_proxy: Any, origin: Any, accept: str, content_type: str
) -> None:
    proxy = start_proxy()
    res = curl(proxy, BLOCKED, "-H", f"Accept: {accept}")
    assert res.status == 403
    assert res.headers["content-type"].startswith(content_type)
    _assert_guarded(res.headers)
    assert not origin.saw(b"/groups/pta")


def test_a_plain_http_block_page_is_guarded_too(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    res = curl(proxy, "http://www.facebook.com/groups/pta", "-H", "Accept: text/html")
    assert res.status == 403
    _assert_guarded(res.headers)


def test_a_form_answer_is_guarded(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    res = curl(
        proxy, "https://www.facebook.com/.socialguard/emergency",
        "-X", "POST", "-d", "token=forged&reason=x",
        "-H", "Content-Type: application/x-www-form-urlencoded",
    )  # fmt: skip
    assert 400 <= res.status < 500
    _assert_guarded(res.headers)
    assert not origin.saw(b".socialguard")


def test_the_proxy_authentication_answer_is_guarded(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    import bcrypt

    pw_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "users.htpasswd").write_text(f"jdoe:{pw_hash}\n")
    # the rules file lands in tmp_path/proxy0/: the htpasswd is named relative to it
    proxy = start_proxy("auth:\n  htpasswd: ../users.htpasswd\n" + TEST_RULES)
    res = curl(proxy, "http://www.example.org/")
    assert res.status == 407
    _assert_guarded(res.headers)
    assert not origin.saw(b"GET / ")


def test_the_internal_error_page_is_guarded(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the engine broke")

    proxy.addon._decision = broken  # the request hook fails: the policy's fail mode answers
    res = curl(proxy, "http://www.example.org/x", "-H", "Accept: text/html")
    assert res.status == 403
    _assert_guarded(res.headers)
    assert not origin.saw(b"GET /x")


# ------------------------------------------------------------------------- Chromium


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
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--proxy-server=http://127.0.0.1:{proxy_port}",
                "--proxy-bypass-list=<-loopback>", "--ignore-certificate-errors",
                "--remote-debugging-pipe", "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,  # noqa: PLW1509 - dup2 onto the pipe fds must run in the child
            pass_fds=(3, 4),
        )  # fmt: skip
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

    def evaluate(self, expression: str, context: int | None = None) -> Any:
        params: dict[str, Any] = {"expression": expression, "returnByValue": True}
        if context is not None:
            params["contextId"] = context
        result = self.call("Runtime.evaluate", params)
        return result["result"].get("value")

    def until(self, expression: str, timeout: float = 30) -> Any:
        """Evaluate until the value is truthy (bounded); the last value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{expression!r} never held; last value {value!r}")

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


def _frame_text(page: Cdp) -> str | None:
    """The text of the framed document, read through its own target (a cross-site frame runs in
    a process of its own); None while Chromium has no frame target yet."""
    targets = page.call("Target.getTargets")["targetInfos"]
    frames = [t for t in targets if t["type"] == "iframe"]
    if not frames:
        return None
    main = page.session
    page.session = ""
    try:
        page.session = page.call(
            "Target.attachToTarget", {"targetId": frames[0]["targetId"], "flatten": True}
        )["sessionId"]
        text = page.evaluate("document.readyState + '|' + (document.body?.innerText ?? '')")
        child, page.session = page.session, ""
        page.call("Target.detachFromTarget", {"sessionId": child})
    finally:
        page.session = main
    return str(text)


def _blocked_requests(proxy: Any) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("stage") == "request" and r["action"] == "block"]


def _frame_text(page: Cdp) -> str | None:
    """The text of the framed document, read through its own target (a cross-site frame runs in
    a process of its own); None while Chromium has no frame target yet."""
    targets = page.call("Target.getTargets")["targetInfos"]
    frames = [t for t in targets if t["type"] == "iframe"]
    if not frames:
        return None
    main = page.session
    page.session = ""
    try:
        page.session = page.call(
            "Target.attachToTarget", {"targetId": frames[0]["targetId"], "flatten": True}
        )["sessionId"]
        text = page.evaluate("document.readyState + '|' + (document.body?.innerText ?? '')")
        child, page.session = page.session, ""
        page.call("Target.detachFromTarget", {"sessionId": child})
    finally:
        page.session = main
    return str(text)


def _blocked_requests(proxy: Any) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("stage") == "request" and r["action"] == "block"]


@pytest.mark.browser
def test_chromium_does_not_display_the_block_page_inside_another_sites_frame(
    start_proxy: Any, origin: Any, browser: Any
) -> None:
    proxy = start_proxy()
    page = browser(proxy)
    framer = f'<iframe id="f" src="{BLOCKED}" width=600 height=400></iframe>'
    page.call("Page.navigate", {"url": "data:text/html," + quote(framer)})
    # the frame's request reached the proxy and was answered with the block page ...
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _blocked_requests(proxy):
        time.sleep(0.1)
    assert _blocked_requests(proxy), "the framed request never reached the proxy"
    # ... and once the frame has loaded, it shows no block page and no emergency button
    text = _frame_text(page)
    while time.monotonic() < deadline and not (text or "").startswith("complete|"):
        time.sleep(0.2)
        text = _frame_text(page)
    assert text is not None and text.startswith("complete|"), text
    assert "blocked" not in text.lower()
    assert "emergency" not in text.lower()


@pytest.mark.browser
def test_chromium_renders_the_block_page_with_its_styles_under_the_policy(
    start_proxy: Any, origin: Any, browser: Any
) -> None:
    proxy = start_proxy()
    page = browser(proxy)
    page.call("Page.navigate", {"url": BLOCKED})
    page.until("document.body && document.body.innerText.includes('This site is blocked')")
    # the inline stylesheet applied (h1 in the page's red): the policy allows what the page needs
    color = page.evaluate("getComputedStyle(document.querySelector('h1')).color")
    assert color == "rgb(163, 38, 27)"
