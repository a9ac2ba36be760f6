"""A real page through the real proxy: an emergency for Facebook opens its page *and* its assets.

In a network namespace the test creates, www.facebook.com and the hosts its page loads from
(static.xx.fbcdn.net, scontent.xx.fbcdn.net, connect.facebook.net) resolve, through the
namespace's own /etc/hosts, to a loopback origin (service_origin.py); so does www.tiktok.com.
`socialguard run` (service_proxy.py) runs in the namespace on the shipped service catalogue and
social list, and headless Chromium browses through it as a teacher would: blocked, the page and
every asset stay away from the origin; after the block page's emergency form, the page and all its
assets load; TikTok, another service, stays blocked. The decision log names the service.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_CDP_PATH = ROOT / "tests" / "overrides" / "test_overrides_e2e.py"
_spec = importlib.util.spec_from_file_location("sg_services_cdp", _CDP_PATH)
assert _spec is not None and _spec.loader is not None
cdp_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cdp_module
_spec.loader.exec_module(cdp_module)
make_self_signed = cdp_module.harness.make_self_signed

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.browser]

ORIGIN = "127.0.0.10"
PROXY_PORT = 18080
ADMIN = "127.0.0.1:18081"
PAGE_HOST = "www.facebook.com"
ASSET_HOSTS = ("static.xx.fbcdn.net", "scontent.xx.fbcdn.net", "connect.facebook.net")
OTHER_HOST = "www.tiktok.com"
NAMES = (PAGE_HOST, *ASSET_HOSTS, OTHER_HOST)

RULES = """\
district:
  name: Test District
  timezone: America/Denver
include: [services.yaml]
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    lists: [lists/social.txt]
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


def _unavailable() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (network namespaces)"
    if shutil.which("ip") is None:
        return "`ip` is not installed (apt-get install iproute2)"
    if cdp_module.CHROMIUM is None:
        return "chromium is not installed (apt-get install chromium)"
    return None


@dataclass
class ServiceLab:
    """One namespace: loopback origin, proxy and browser; names resolve by its own hosts file."""

    ns: str
    workdir: Path
    events: Path
    log_dir: Path
    state: Path
    rules: Path
    procs: list[subprocess.Popen[str]]

    def exec(self, *argv: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def start(self, argv: list[str | Path], name: str, ready: str | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed at once below
        proc = subprocess.Popen(
            self.exec(*argv), stdout=subprocess.PIPE if ready else log, stderr=log, text=True
        )
        log.close()
        self.procs.append(proc)
        if ready:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # bounded: the script prints "ready" or exits
            assert line.strip() == ready, (self.workdir / f"{name}.log").read_text()

    def origin_requests(self) -> list[dict[str, str]]:
        if not self.events.exists():
            return []
        return [json.loads(x) for x in self.events.read_text().splitlines() if x.strip()]

    def records(self) -> list[dict[str, Any]]:
        out = []
        for f in sorted(self.log_dir.rglob("*")):
            if f.is_file() and not f.name.endswith(".gz"):
                for line in f.read_text(errors="replace").splitlines():
                    if line.startswith("{"):
                        out.append(json.loads(line))
        return out

    def browser(self, profile: Path) -> Any:
        """Chromium inside the namespace, through the proxy (cdp_module.Cdp drives it)."""
        wrapper = self.workdir / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.ns} {cdp_module.CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        saved = cdp_module.CHROMIUM
        cdp_module.CHROMIUM = str(wrapper)
        try:
            page = cdp_module.Cdp(PROXY_PORT, profile)
        finally:
            cdp_module.CHROMIUM = saved
        page.attach_page()
        return page


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ServiceLab]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    ns = f"sgsvc{secrets.token_hex(3)}"
    etc = Path("/etc/netns") / ns
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    procs: list[subprocess.Popen[str]] = []
    try:
        etc.mkdir(parents=True)
        # `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts: in the namespace,
        # and only there, the service's names are the loopback origin
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{ORIGIN} {' '.join(NAMES)}\n")
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        (tmp_path / "lists").mkdir()
        shutil.copy(ROOT / "rules" / "lists" / "social.txt", tmp_path / "lists" / "social.txt")
        shutil.copy(ROOT / "rules" / "services.yaml", tmp_path / "services.yaml")
        rules = tmp_path / "policy.yaml"
        rules.write_text(RULES)
        cert, key = make_self_signed(tmp_path, NAMES)
        events = tmp_path / "origin-events.jsonl"
        config = tmp_path / "origin.json"
        config.write_text(json.dumps({"events": str(events), "addr": ORIGIN, "port": 443,
                                      "cert": str(cert), "key": str(key)}))  # fmt: skip
        the_lab = ServiceLab(ns, tmp_path, events, tmp_path / "log", tmp_path / "state", rules,
                             procs)  # fmt: skip
        the_lab.start([sys.executable, HERE / "service_origin.py", config], "origin", "ready")
        the_lab.start(
            [sys.executable, HERE / "service_proxy.py", rules, the_lab.state, tmp_path / "certs",
             the_lab.log_dir, str(PROXY_PORT), ADMIN],
            "proxy",
        )  # fmt: skip
        _wait_for_proxy(the_lab)
        yield the_lab
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
            if p.stdout is not None:
                p.stdout.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)
        shutil.rmtree(etc, ignore_errors=True)


def _wait_for_proxy(lab: ServiceLab) -> None:
    """Bounded: until the proxy answers a request for the page (its block page, a 403)."""
    deadline = time.monotonic() + 60
    last = ""
    while time.monotonic() < deadline:
        r = subprocess.run(
            lab.exec("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                     "-x", f"http://127.0.0.1:{PROXY_PORT}", f"https://{PAGE_HOST}/"),
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        last = r.stdout
        if last == "403":
            return
        if any(p.poll() is not None for p in lab.procs):
            break
        time.sleep(0.3)
    log = (lab.workdir / "proxy.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"the proxy never answered (last {last!r}); its log:\n{log}")


PAGE_STATE = """(() => ({
  photo: document.getElementById('photo') ? document.getElementById('photo').naturalWidth : -1,
  sdk: window.sdkLoaded === true,
  color: document.getElementById('feed') ?
         getComputedStyle(document.getElementById('feed')).color : null,
}))()"""


def test_an_emergency_opens_the_whole_service_in_a_real_browser(lab: ServiceLab) -> None:
    page = lab.browser(lab.workdir / "profile")
    try:
        # Blocked: the page and each of its asset hosts meet the block page; the origin sees none.
        text = page.navigate(f"https://{PAGE_HOST}/")
        assert "Test District" in text and "Facebook is blocked on this network" in text
        assert "I declare an emergency" in text
        for host in ASSET_HOSTS:
            page.navigate(f"https://{host}/probe.css")
        assert lab.origin_requests() == []

        # The page's block page and its emergency form, as a teacher would use them.
        assert "I declare an emergency" in page.navigate(f"https://{PAGE_HOST}/")
        submit = cdp_module.SUBMIT.format(
            form="emergency", reason=json.dumps("Lockdown: reach families"), tamper=""
        )
        assert "Emergency access until" in page.load(lambda: page.evaluate(submit))
        page.load(
            lambda: page.evaluate("document.querySelector('main a.tap[href^=\"https:\"]').click()")
        )
        state = _loaded(page)
        assert state == {"photo": 1, "sdk": True, "color": "rgb(1, 2, 3)"}
        reached = {r["host"] for r in lab.origin_requests()}
        assert {PAGE_HOST, *ASSET_HOSTS} <= reached

        # Another service stays blocked, and never reaches the origin.
        assert "I declare an emergency" in page.navigate(f"https://{OTHER_HOST}/")
        assert OTHER_HOST not in {r["host"] for r in lab.origin_requests()}
    finally:
        page.close()

    decisions = [
        r for r in lab.records() if r.get("type") == "decision" and r.get("stage") != "connection"
    ]
    lifted = {r["host"]: r for r in decisions if r.get("basis") == "emergency"}
    assert set(ASSET_HOSTS) <= set(lifted)
    assert {lifted[h]["service"] for h in ASSET_HOSTS} == {"facebook"}
    blocked = [r for r in decisions if r.get("host") == OTHER_HOST]
    assert blocked and all(r["action"] == "block" and r["service"] == "tiktok" for r in blocked)
    # the page is a visit; what it loaded is not
    assert [r.get("visit") for r in blocked].count(True) == 1  # one page opened (and its favicon)
    assert all("visit" not in lifted[h] for h in ASSET_HOSTS)
    # and /metrics counts per service
    metrics = subprocess.run(
        lab.exec("curl", "-s", "--max-time", "5", f"http://{ADMIN}/metrics"),
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert 'socialguard_service_visits_total{action="block",service="tiktok"}' in metrics
    assert 'socialguard_service_requests_total{action="allow",service="facebook"}' in metrics


def _loaded(page: Any) -> dict[str, Any]:
    """The page's own view of its assets, once the photo has settled (bounded)."""
    deadline = time.monotonic() + 20
    state: dict[str, Any] = page.evaluate(PAGE_STATE)
    while state.get("photo") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        state = page.evaluate(PAGE_STATE)
    return state
