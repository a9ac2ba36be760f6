"""The report a board is handed (`audit report --html/--pdf`): who made it, for when, whether the
log is intact, people as codes, visits first, requests, grants, emergencies and refused forms."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import DENVER, event, make_decision
from typer.testing import CliRunner

from socialguard.audit import decision_event, new_decision_id
from socialguard.audit.reader import Filter, search
from socialguard.audit.report import (
    Integrity,
    pseudonymiser,
    render_html,
    render_text,
    show_names,
    summarise,
)
from socialguard.audit.schema import admin_event
from socialguard.cli import app

RULES = """
district:
  name: Example School District
  timezone: America/Denver
"""


def _visit(host: str, service: str, user: str, **kw: Any) -> dict[str, Any]:
    d = replace(make_decision(host, user=user), service=service)
    return decision_event(
        d, decision_id=new_decision_id(), stage="request", client=d.principal.client_ip, **kw
    )


def _fill(open_log: Any, clock: Any) -> Path:
    """A month in small: visits, a request approved after 90 minutes, one denied, a grant never
    used, a self-declared emergency reviewed, an administrator's emergency, refused forms."""
    log = open_log("n1-w0")
    log.write(_visit("www.facebook.com", "facebook", "jdoe", visit=True))
    log.write(_visit("static.xx.fbcdn.net", "facebook", "jdoe"))
    log.write(_visit("www.tiktok.com", "tiktok", "bwong", visit=True))
    req = {"who": "user:jdoe", "site": "facebook.com", "url": "https://www.facebook.com/"}
    log.write(
        admin_event("access_requested", by="user:jdoe", source="10.0.0.5", target="r-1",
                    reason="PTA page", details=req)
    )  # fmt: skip
    log.write(
        admin_event("access_requested", by="user:bwong", source="10.0.0.6", target="r-2",
                    reason="Watch videos", details={**req, "who": "user:bwong"})
    )  # fmt: skip
    clock.advance(90 * 60)
    log.write(
        admin_event("access_approved", by="principal", source="cli@gw", target="r-1",
                    reason="ok", details={"who": "user:jdoe", "site": "facebook.com",
                                          "grant_id": "g-1", "ends": "2026-12-01T20:00:00Z"})
    )  # fmt: skip
    log.write(
        admin_event("access_denied", by="principal", source="cli@gw", target="r-2",
                    reason="not for school", details={"who": "user:bwong", "site": "tiktok.com"})
    )  # fmt: skip
    log.write(
        admin_event("grant_added", by="principal", source="cli@gw", target="g-1", reason="ok",
                    details={"who": "user:jdoe", "sites": ["facebook.com"],
                             "ends": "2026-12-01T20:00:00Z"})
    )  # fmt: skip
    log.write(
        admin_event("emergency_self_declared", by="user:jdoe", source="10.0.0.5", target="e-1",
                    reason="Lockdown notice", details={"scope": "device:laptop-17",
                                                       "site": "facebook.com",
                                                       "ends": "2026-12-01T19:30:00Z"})
    )  # fmt: skip
    log.write(
        admin_event("emergency_acknowledged", by="principal", source="cli@gw", target="e-1",
                    reason="genuine", details={"person": "user:jdoe"})
    )  # fmt: skip
    log.write(
        admin_event("emergency_started", by="principal", source="cli@gw", target="e-2",
                    reason="Storm closure", details={"scope": "all", "ends": None})
    )  # fmt: skip
    log.write(
        {"type": "form", "decision_id": new_decision_id(), "event": "block_page_form",
         "form": "emergency", "client": "10.0.0.9", "outcome": "refused", "why": "forged"}
    )  # fmt: skip
    log.close()


@pytest.fixture
def logdir(tmp_path: Path, open_log: Any, clock: Any) -> Path:
    _fill(open_log, clock)
    return tmp_path / "log"


def report(logdir: Path, **kw: Any) -> str:
    kw.setdefault("district", "Example School District")
    kw.setdefault("generated_at", "2026-12-07 04:00 MST")
    kw.setdefault("integrity", Integrity("self-consistent", "OK, SELF-CONSISTENT ONLY: ..."))
    return render_html(summarise(search(logdir, Filter()), DENVER), **kw)


def test_the_header_says_district_period_when_made_and_integrity(logdir: Path) -> None:
    page = report(logdir)
    for fact in (
        "<dt>District</dt><dd>Example School District</dd>",
        "<dt>Period</dt><dd>the beginning to now (times in America/Denver)</dd>",
        "<dt>Generated at</dt><dd>2026-12-07 04:00 MST</dd>",
        "<strong>Log integrity: self-consistent.</strong> OK, SELF-CONSISTENT ONLY",
    ):
        assert fact in page


def test_an_unverified_log_says_so(logdir: Path) -> None:
    assert "Log integrity: not checked." in report(logdir, integrity=None)


def test_people_are_codes_by_default_and_stable_under_one_key(logdir: Path) -> None:
    key = b"k" * 32
    page = report(logdir, people=pseudonymiser(key))
    for who in ("jdoe", "bwong", "10.0.0.5", "10.0.0.9", "laptop-17"):
        assert who not in page, who
    jdoe = pseudonymiser(key)("user:jdoe")
    assert re.fullmatch(r"Person [A-Z2-7]{6}", jdoe)
    assert page.count(jdoe) >= 4  # visits, request, grant, emergency: one code throughout
    assert jdoe != pseudonymiser(b"x" * 32)("user:jdoe")
    assert "principal" in page  # administrators are named where they acted


def test_names_shows_people(logdir: Path) -> None:
    page = report(logdir, people=show_names)
    assert "user:jdoe" in page and "Person " not in page.split("</h1>", 1)[1].split("</p>", 2)[2]


def test_sections_visits_first_then_requests_grants_emergencies_refused(logdir: Path) -> None:
    page = report(logdir)
    order = [
        "<h2>Blocked visits by service</h2>",
        "<h2>Blocked visits by person</h2>",
        "<h2>Access requests</h2>",
        "<h2>Grants</h2>",
        "<h2>Emergencies</h2>",
        "<h2>Refused form submissions</h2>",
        "<h2>Blocked requests by day</h2>",
    ]
    at = [page.index(h) for h in order]
    assert at == sorted(at)


def test_access_requests_show_answer_and_time_to_answer(logdir: Path) -> None:
    page = report(logdir)
    assert "<p>2 filed: 1 approved, 1 denied, 0 not answered.</p>" in page
    assert "<td>approved</td><td>principal</td><td>1 h 30 min</td>" in page
    assert "<td>denied</td><td>principal</td><td>1 h 30 min</td>" in page


def test_grants_say_used_or_never_used(logdir: Path) -> None:
    page = report(logdir)
    assert "1 issued in the period, 1 never used." in page
    assert "<td>never used</td>" in page


def test_each_emergency_is_one_row_with_scope_site_and_review(logdir: Path) -> None:
    page = report(logdir)
    section = page.split("<h2>Emergencies</h2>", 1)[1].split("<h2>", 1)[0]
    assert section.count("<tr>") == 3  # the header and two emergencies
    assert "Lockdown notice" in section and "facebook.com" in section
    assert "reviewed" in section and "by principal: genuine" in section
    assert "<td>everyone</td>" in section and "until stopped" in section
    assert "<td>one device</td>" in section  # the declarer's device, not a second code


def test_refused_forms_are_listed(logdir: Path) -> None:
    section = report(logdir).split("<h2>Refused form submissions</h2>", 1)[1]
    assert "<td>emergency</td><td>refused</td><td>forged</td>" in section


@pytest.mark.parametrize(("paper", "size"), [("letter", "Letter"), ("a4", "A4")])
def test_the_print_layout_sets_the_paper(logdir: Path, paper: str, size: str) -> None:
    assert f"@page{{size:{size};" in report(logdir, paper=paper)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


def test_cli_html_names_the_district_and_keeps_codes_stable(
    logdir: Path, rules: Path, tmp_path: Path
) -> None:
    base = ["audit", "report", "--log-dir", str(logdir), "--rules", str(rules)]
    base += ["--state", str(tmp_path / "state")]
    (tmp_path / "state").mkdir()
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    assert cli(*base, "--html", str(first)).exit_code == 0
    assert cli(*base, "--html", str(second)).exit_code == 0
    a, b = first.read_text(), second.read_text()
    assert "<dd>Example School District</dd>" in a and "Log integrity: " in a
    codes = sorted(set(re.findall(r"Person [A-Z2-7]{6}", a)))
    assert codes and codes == sorted(set(re.findall(r"Person [A-Z2-7]{6}", b)))
    assert (tmp_path / "state" / "report.key").stat().st_mode & 0o777 == 0o600
    named = tmp_path / "n.html"
    assert cli(*base, "--names", "--html", str(named)).exit_code == 0
    assert "user:jdoe" in named.read_text()


PDFTOTEXT = shutil.which("pdftotext")


@pytest.mark.browser
@pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext is not installed (apt-get poppler-utils)")
@pytest.mark.parametrize("paper", ["letter", "a4"])
def test_cli_pdf_has_the_pages_and_text(
    logdir: Path, rules: Path, tmp_path: Path, paper: str
) -> None:
    from socialguard.audit.pdf import find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = tmp_path / "report.pdf"
    args = ["audit", "report", "--log-dir", str(logdir), "--rules", str(rules)]
    args += ["--state", str(tmp_path), "--pdf", str(out), "--paper", paper]
    assert cli(*args).exit_code == 0
    assert out.read_bytes()[:5] == b"%PDF-"
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True)
    pages = int(re.search(r"Pages:\s+(\d+)", info.stdout).group(1))  # type: ignore[union-attr]
    width = float(re.search(r"Page size:\s+([\d.]+)", info.stdout).group(1))  # type: ignore[union-attr]
    assert 1 <= pages <= 4
    assert round(width) == (612 if paper == "letter" else 595)  # Letter 8.5 in, A4 210 mm
    text = subprocess.run(
        [PDFTOTEXT, "-layout", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    for fact in (
        "Example School District",
        "Generated at",
        "Log integrity",
        "Blocked visits by service",
        "Access requests",
        "Emergencies",
        "Refused form submissions",
        "Lockdown",  # a table cell: its words may wrap onto lines of their own
    ):
        assert fact in text, fact
    assert "jdoe" not in text


def test_cli_pdf_without_chromium_says_how(
    logdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(
        app,
        ["audit", "report", "--log-dir", str(logdir), "--tz", "America/Denver",
         "--state", str(tmp_path), "--pdf", str(tmp_path / "r.pdf")],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--pdf needs Chromium, which is not installed (apt-get install chromium)" in (
        result.stderr + result.stdout
    )


def test_a_refused_form_is_the_persons_where_the_record_names_one() -> None:
    import json as _json

    from socialguard.audit.reader import Found
    from socialguard.audit.report import summarise

    record = {
        "type": "form", "ts": "2026-12-01T17:00:00.000Z", "form": "emergency",
        "client": "10.20.3.4", "user": "alice", "identified_by": "radius",
        "outcome": "limit_reached", "limit": "emergency_per_day",
    }  # fmt: skip
    raw = _json.dumps(record).encode()
    s = summarise([Found(raw, Path("x.jsonl"), 1, record)], DENVER)
    assert [f.who for f in s.refused_forms] == ["user:alice"]


def test_an_emergency_scoped_to_a_person_is_the_person_in_the_report() -> None:
    from socialguard.audit.report import _scope, pseudonymiser

    code = pseudonymiser(b"k")
    assert _scope("user:alice", code) == "the person, wherever identified"
    assert _scope("ip:10.0.0.9", code) == "one address"


# -- the terminal report: people as the same codes ------------------------------------------------

PEOPLE = ("jdoe", "bwong", "10.0.0.5", "10.0.0.9", "laptop-17")


def test_the_text_report_shows_codes_by_default(logdir: Path) -> None:
    key = b"k" * 32
    text = render_text(summarise(search(logdir, Filter()), DENVER), pseudonymiser(key))
    for who in PEOPLE:
        assert who not in text, who
    jdoe = pseudonymiser(key)("user:jdoe")
    assert text.count(jdoe) >= 3  # visits, the access request, the grant
    assert "by principal" in text  # administrators are named where they acted
    assert "jdoe" not in render_text(summarise(search(logdir, Filter()), DENVER))


def test_the_text_report_shows_names_when_asked(logdir: Path) -> None:
    text = render_text(summarise(search(logdir, Filter()), DENVER), show_names)
    assert "user:jdoe" in text and "Person " not in text


def test_cli_text_uses_the_codes_of_the_html_report_and_names_on_request(
    logdir: Path, rules: Path, tmp_path: Path
) -> None:
    base = ["audit", "report", "--log-dir", str(logdir), "--rules", str(rules)]
    base += ["--state", str(tmp_path / "state")]
    (tmp_path / "state").mkdir()
    page = tmp_path / "a.html"
    shown = cli(*base, "--html", str(page))
    assert shown.exit_code == 0
    for who in PEOPLE:
        assert who not in shown.stdout, who
    codes = set(re.findall(r"Person [A-Z2-7]{6}", shown.stdout))
    assert codes and codes <= set(re.findall(r"Person [A-Z2-7]{6}", page.read_text()))
    again = cli(*base)
    assert set(re.findall(r"Person [A-Z2-7]{6}", again.stdout)) == codes  # <state>/report.key
    named = cli(*base, "--names")
    assert "user:jdoe" in named.stdout and "Person " not in named.stdout


def test_an_emergency_for_a_person_wherever_identified_says_so(
    tmp_path: Path, open_log: Any
) -> None:
    log = open_log("n1-w0")
    log.write(
        admin_event("emergency_self_declared", by="user:kpark", source="10.0.0.7", target="e-7",
                    reason="Bus crash", details={"scope": "user:kpark", "site": "facebook.com",
                                                 "ends": "2026-12-01T19:30:00Z"})
    )  # fmt: skip
    log.close()
    page = report(tmp_path / "log")
    assert "<td>the person, wherever identified</td>" in page and "kpark" not in page


# -- nested groups: each attempt once, under the most specific group ---------------------------

NESTED_RULES = """
district:
  name: Example School District
  timezone: America/Denver
groups:
  all-staff:
    include: [teachers]
    networks: [10.10.0.0/16]
  teachers:
    networks: [10.20.0.0/16]
  coaches:
    users: [kpark]
categories:
  social: {domains: [facebook.com]}
rules: []
default: allow
"""


def _nested_log(open_log: Any) -> None:
    """3 by a teacher (teachers, in all-staff), 2 by other staff, 1 by a teacher who coaches."""
    log = open_log("n1-w0")
    for _ in range(3):
        log.write(event(user="jdoe", groups=frozenset({"all-staff", "teachers"})))
    for _ in range(2):
        log.write(event(user="office", groups=frozenset({"all-staff"})))
    log.write(event(user="kpark", groups=frozenset({"all-staff", "teachers", "coaches"})))
    log.close()


def test_nested_groups_count_each_attempt_once_and_show_the_nesting(
    tmp_path: Path, open_log: Any
) -> None:
    _nested_log(open_log)
    rules = tmp_path / "nested.yaml"
    rules.write_text(NESTED_RULES, encoding="utf-8")
    (tmp_path / "state").mkdir()
    base = ["audit", "report", "--log-dir", str(tmp_path / "log"), "--rules", str(rules)]
    page = tmp_path / "board.html"
    out = cli(*base, "--state", str(tmp_path / "state"), "--html", str(page))
    assert out.exit_code == 0, out.stdout
    text = out.stdout.split("Blocked attempts by group", 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^  (.+?)\s{2,}(\d+)$", text, re.M))
    assert rows == {
        "teachers (in all-staff)": "3",
        "all-staff": "2",
        "coaches + teachers (in all-staff)": "1",
    }
    assert sum(map(int, rows.values())) == 6  # the board's rows add up to the blocked requests
    section = page.read_text().split("<h2>Blocked requests by group</h2>", 1)[1].split("<h2>")[0]
    assert "The rows add up to the 6 blocked requests." in section
    assert "<title>teachers (in all-staff): 3</title>" in section
    assert "<title>all-staff: 2</title>" in section
    assert "all-staff: 6" not in section  # the parent no longer repeats its members' attempts
