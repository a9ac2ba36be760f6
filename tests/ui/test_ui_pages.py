"""The pages people read, as headless Chromium lays them out: a phone (390x844) and a desk
(1280x800).

Each page is rendered by the real code (the block page with the real forms and store, each
follow-up page from a real form submission), screenshotted at both sizes (kept under the test's
tmp dir and copied to `test-artifacts/`, git-ignored, for a person to look at), and checked with
axe-core in Chromium: no serious or critical accessibility violation. axe-core comes from npm
(`npm install --prefix var/node axe-core`, as `.ci/run` does); without it that check is skipped
with the reason."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from socialguard.engine import Action, Basis, Bypass, Decision, Principal
from socialguard.overrides import Limits, open_store
from socialguard.overrides.answers import RequestAnswer
from socialguard.overrides.sqlite import SqliteStore
from socialguard.proxy.blockpage import BlockFormat, BlockNotice, render
from socialguard.proxy.forms import EMERGENCY_PATH, REQUEST_PATH, BlockPageForms, FormRequest
from socialguard.proxy.pagekit import Brand
from socialguard.proxy.request_status import answer_html

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "var" / "node" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZES = {"phone": (390, 844), "desk": (1280, 800)}

DENVER = ZoneInfo("America/Denver")
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=DENVER).astimezone(UTC)
CONTACT = "the district technology office, (406) 555-0100, helpdesk@example.k12.mt.us"
BRAND = Brand("Example School District", CONTACT)
TEACHER = Principal(client_ip="10.20.1.5", user="jdoe", groups=frozenset({"staff"}))
URL = "https://www.facebook.com/groups/pta"
LIMITS = Limits(
    group_names=frozenset({"staff"}),
    category_names=frozenset({"social"}),
    grant_max=timedelta(hours=8),
    emergency_minutes=30,
    emergency_per_day=1,
    requests_per_day=1,
    timezone=DENVER,
    service_label=lambda site: "Facebook",
)

pytestmark = pytest.mark.browser


class Clock:
    now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def forms(tmp_path: Path) -> Iterator[BlockPageForms]:
    clock = Clock()
    store = open_store(tmp_path / "socialguard.db", clock=clock)
    assert isinstance(store, SqliteStore)
    yield BlockPageForms(store, lambda: LIMITS, clock=clock, brand=lambda: BRAND)
    store.close()


def blocked() -> Decision:
    return Decision(
        action=Action.BLOCK,
        basis=Basis.RULE,
        reason="Individual use of social networking during school hours is prohibited "
        "(board policy 4.3).",
        principal=TEACHER,
        policy_version="v1",
        host="www.facebook.com",
        rule_id="staff-social-school-hours",
        category="social",
        matched_domain="facebook.com",
        bypass=frozenset({Bypass.GRANT, Bypass.EMERGENCY}),
    )


def block_page(forms: BlockPageForms, answer: str = "") -> str:
    notice = BlockNotice(
        host="www.facebook.com",
        reason=blocked().reason,
        reference="K7Q2-9XMD-4TRA",
        time="2026-12-01 10:00 MST",
        district=BRAND.district,
        rule="staff-social-school-hours",
        category="social",
        who="jdoe (all-staff, staff)",
        contact=CONTACT,
        policy_url="https://www.example.k12.mt.us/board/policies/social-networking",
        bypass_html=forms.links(blocked(), url=URL, decision_id="K7Q2-9XMD-4TRA"),
        service="Facebook",
        answer_html=answer,
    )
    return render(notice, BlockFormat.HTML).body.decode()


def answered(status: str, **kw: object) -> str:
    """The block page's card for the teacher's own request in `status` (request_status.py)."""
    a = RequestAnswer(
        "r-3f9a2kq7xm", "user:jdoe", "facebook.com", status, T0 - timedelta(hours=1), **kw
    )  # type: ignore[arg-type]
    return answer_html(a, now=T0, zone=DENVER)


def submit(forms: BlockPageForms, path: str, token: str) -> str:
    out = forms.handle(
        FormRequest(
            method="POST",
            path=path,
            host="www.facebook.com",
            principal=TEACHER,
            body=urlencode({"token": token, "reason": "Lockdown notice from school"}).encode(),
            content_type="application/x-www-form-urlencoded",
            origin="https://www.facebook.com",
            sec_fetch_site="same-origin",
        )
    )
    return out.body.decode()


def tokens(page: str) -> dict[str, str]:
    return dict(re.findall(r'action="([^"]+)".*?name="token" value="([^"]+)"', page))


def all_pages(forms: BlockPageForms) -> dict[str, str]:
    """Every page a blocked teacher can meet, rendered by the real code."""
    first = block_page(forms)
    stale = tokens(block_page(forms))  # a second tab, opened before the allowance was used
    pages = {"blockpage": first}
    pages["request-sent"] = submit(forms, REQUEST_PATH, tokens(first)[REQUEST_PATH])
    pages["emergency-confirmed"] = submit(forms, EMERGENCY_PATH, tokens(first)[EMERGENCY_PATH])
    pages["limit-reached"] = submit(forms, REQUEST_PATH, stale[REQUEST_PATH])
    pages["form-expired"] = submit(forms, EMERGENCY_PATH, "forged.token")
    pages["blockpage-limits-used"] = block_page(forms)
    pages["blockpage-request-pending"] = block_page(forms, answered("pending"))
    pages["blockpage-request-approved"] = block_page(
        forms, answered("approved", ends=T0 + timedelta(hours=4))
    )
    pages["blockpage-request-denied"] = block_page(
        forms, answered("denied", note="Not for individual use; ask your principal to post it.")
    )
    return pages


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def pages(forms: BlockPageForms, tmp_path: Path) -> dict[str, Path]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = {}
    for name, text in all_pages(forms).items():
        path = tmp_path / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        out[name] = path
    return out


def test_the_block_page_offers_only_what_is_left(pages: dict[str, Path]) -> None:
    used = pages["blockpage-limits-used"].read_text()
    assert "<form" not in used and used.count("used up") == 2
    assert "Emergency access until 10:30 MST" in pages["emergency-confirmed"].read_text()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshots_of_every_page(pages: dict[str, Path], tmp_path: Path, size: str) -> None:
    width, height = SIZES[size]
    ARTIFACTS.mkdir(exist_ok=True)
    for name, path in pages.items():
        shot = tmp_path / f"{name}-{size}.png"
        done = chromium(f"--window-size={width},{height}", f"--screenshot={shot}", path.as_uri())
        assert shot.exists() and shot.stat().st_size > 1000, done.stderr[-2000:]
        shutil.copy(shot, ARTIFACTS / shot.name)


AXE_RUNNER = """
<script>{axe}</script>
<script>
axe.run(document, {{ resultTypes: ["violations"] }}).then(function (r) {{
  var out = document.createElement("pre");
  out.id = "axe-result";
  out.textContent = JSON.stringify(r.violations.map(function (v) {{
    return {{ id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.map(function (n) {{ return n.html; }}) }};
  }}));
  document.body.appendChild(out);
}});
</script>
"""


def axe_violations(page: Path, tmp_path: Path) -> list[dict[str, object]]:
    """Run axe-core over `page` in Chromium: a test-only copy of the page with axe inlined
    (the real page carries a CSP that allows no script, and needs none)."""
    runner = AXE_RUNNER.format(axe=AXE.read_text(encoding="utf-8"))
    html = page.read_text(encoding="utf-8").replace("</body>", runner + "</body>")
    probe = tmp_path / f"axe-{page.name}"
    probe.write_text(html, encoding="utf-8")
    done = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="axe-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"axe did not finish: {done.stderr[-2000:]}"
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    result: list[dict[str, object]] = json.loads(text)
    return result


def test_no_serious_or_critical_accessibility_violation(
    pages: dict[str, Path], tmp_path: Path
) -> None:
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm install --prefix var/node axe-core)")
    bad = {}
    for name, path in pages.items():
        serious = [
            v for v in axe_violations(path, tmp_path) if v["impact"] in ("serious", "critical")
        ]
        if serious:
            bad[name] = serious
    assert not bad, json.dumps(bad, indent=1)


def board_report() -> str:
    """The board's report over a small month, people as codes."""
    from collections import Counter

    from socialguard.audit.report import (
        EmergencyRow,
        Integrity,
        RefusedForm,
        RequestRow,
        Summary,
        pseudonymiser,
        render_html,
    )

    filed = datetime(2026, 11, 3, 9, 0, tzinfo=DENVER)
    s = Summary(zone="America/Denver", since="2026-11-01", until="2026-11-30")
    s.blocked, s.blocked_visits = 40, 6
    s.blocked_by_day = Counter({"2026-11-03": 25, "2026-11-04": 15})
    s.blocked_by_hour = Counter({9: 20, 13: 20})
    s.blocked_by_group = Counter({"staff": 40})
    s.blocked_by_person = Counter({"user:jdoe": 30, "ip:10.0.0.6": 10})
    s.blocked_destinations = Counter({"www.facebook.com": 30, "www.tiktok.com": 10})
    s.blocked_requests_by_service = Counter({"facebook": 30, "tiktok": 10})
    s.blocked_visits_by_service = Counter({"facebook": 4, "tiktok": 2})
    s.blocked_visits_by_person = Counter({"user:jdoe": 4, "ip:10.0.0.6": 2})
    s.requests = {
        "r-1": RequestRow("r-1", filed, "user:jdoe", "facebook.com", "PTA page", "approved",
                          filed + timedelta(minutes=95), "principal", "g-1"),
    }  # fmt: skip
    s.emergency_rows = {
        "e-1": EmergencyRow("e-1", "2026-11-04 10:00", "user:jdoe", "device:laptop-17",
                            "Lockdown notice", True, "facebook.com", "2026-11-04 10:30",
                            "awaiting review"),
    }  # fmt: skip
    s.refused_forms = [
        RefusedForm("2026-11-04 11:00", "emergency", "refused", "forged", "ip:10.0.0.9", "")
    ]
    return render_html(
        s,
        district="Example School District",
        generated_at="2026-12-07 04:00 MST",
        integrity=Integrity("self-consistent", "OK, SELF-CONSISTENT ONLY: ..."),
        people=pseudonymiser(b"k" * 32),
    )


def test_the_board_report_is_accessible_and_screenshotted(tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(board_report(), encoding="utf-8")
    shot = tmp_path / "report-desk.png"
    chromium("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.exists()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm install --prefix var/node axe-core)")
    serious = [v for v in axe_violations(page, tmp_path) if v["impact"] in ("serious", "critical")]
    assert not serious, json.dumps(serious, indent=1)
