"""Reading the log back: search filters over rotated, gzipped, multi-node logs; the report and its
HTML."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from audit_helpers import DENVER, Clock, event

from socialguard.audit import admin_event
from socialguard.audit.reader import Filter, Who, parse_when, search
from socialguard.audit.report import render_html, render_text, summarise
from socialguard.engine.model import Action, Basis
from socialguard.errors import AuditError

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def sample(tmp_path: Path, open_log, clock: Clock) -> Path:
    """Two nodes, three district days, small files (so several are gzipped), admin events."""
    clock.set(datetime(2026, 11, 23, 7, 55, tzinfo=DENVER))
    a = open_log("n1-w0", max_bytes=4096)
    b = open_log("n1-w1", max_bytes=4096)
    a.write(
        admin_event(
            "grant_added",
            by="principal",
            source="cli@admin",
            target="G-1",
            reason="yearbook photos",
            details={"who": "user:asmith"},
        )
    )
    a.write(
        admin_event(
            "emergency_started",
            by="principal",
            source="cli@admin",
            target="E-1",
            reason="lockdown drill: parents must be reached",
            details={"scope": "all"},
        )
    )
    a.write(
        admin_event(
            "emergency_self_declared",
            by="blockpage",
            source="10.0.0.9",
            target="E-2",
            reason="my child is ill",
            details={"scope": "user:bwong", "site": "facebook.com"},
        )
    )
    a.write(
        admin_event(
            "emergency_self_declared",
            by="blockpage",
            source="10.0.0.8",
            target="E-3",
            reason="car accident",
            details={"scope": "user:cdiaz"},
        )
    )
    a.write(
        admin_event(
            "emergency_acknowledged",
            by="principal",
            source="cli@admin",
            target="E-3",
            reason="checked",
        )
    )
    for day in (23, 24, 25):
        clock.set(datetime(2026, 11, day, 8, 0, tzinfo=DENVER))
        for i in range(10):
            clock.advance(60)
            a.write(event("www.facebook.com", user="jdoe", client_ip="10.0.0.5"))
            b.write(
                event(
                    "m.tiktok.com",
                    user=None,
                    device="cart-3",
                    groups=frozenset({"students"}),
                    client_ip="10.0.1.7",
                )
            )
            a.write(event("example.org", action=Action.ALLOW, category=None, rule_id=None))
            if i < 3:
                b.write(
                    event(
                        "instagram.com",
                        user="asmith",
                        action=Action.ALLOW,
                        basis=Basis.GRANT,
                        override_id="G-1",
                    )
                )
        clock.set(datetime(2026, 11, day, 13, 0, tzinfo=DENVER))
        a.write(
            event(
                "www.facebook.com",
                user="bwong",
                action=Action.ALLOW,
                basis=Basis.EMERGENCY,
                override_id="E-1",
            )
        )
    a.close()
    b.close()
    return tmp_path / "log"


def found(log_dir: Path, **kw: object) -> list[dict]:
    return [f.record for f in search(log_dir, Filter(**kw))]  # type: ignore[arg-type]


def test_the_sample_spans_gzipped_files_on_both_nodes(sample: Path) -> None:
    names = [p.name for p in sample.iterdir()]
    assert any(n.endswith(".jsonl.gz") and "-w0-" in n for n in names)
    assert any(n.endswith(".jsonl.gz") and "-w1-" in n for n in names)


def test_search_without_filters_returns_every_decision_and_admin_event_in_time_order(
    sample: Path,
) -> None:
    rs = found(sample)
    assert len([r for r in rs if r["type"] == "decision"]) == 3 * (10 + 10 + 10 + 3 + 1)
    assert len([r for r in rs if r["type"] == "admin"]) == 5
    assert [r["ts"] for r in rs] == sorted(r["ts"] for r in rs)
    assert {r["node"] for r in rs} == {"n1-w0", "n1-w1"}


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("user:jdoe", 60),
        ("device:cart-3", 30),
        ("ip:10.0.1.7", 30),
        ("ip:10.0.1.0/24", 30),
        ("group:students", 30),
        ("user:nobody", 0),
    ],
)
def test_search_by_who(sample: Path, who: str, expected: int) -> None:
    rs = found(sample, who=Who.parse(who), types=frozenset({"decision"}))
    assert len(rs) == expected


def test_search_by_host_matches_subdomains_only(sample: Path) -> None:
    assert len(found(sample, host="facebook.com")) == 33
    assert len(found(sample, host="book.com")) == 0
    assert len(found(sample, host="tiktok.com")) == 30


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("action", "block", 60),
        ("action", "allow", 42),
        ("basis", "grant", 9),
        ("basis", "emergency", 3),
        ("category", "social", 72),
        ("rule", "staff-social-school-hours", 72),
    ],
)
def test_search_by_field(sample: Path, field: str, value: str, expected: int) -> None:
    assert len(found(sample, **{field: value})) == expected


def test_search_by_time_uses_the_district_zone(sample: Path) -> None:
    since = parse_when("2026-11-24", DENVER, now=NOW)
    until = parse_when("2026-11-24", DENVER, now=NOW, end=True)
    rs = found(sample, since=since, until=until, types=frozenset({"decision"}))
    assert len(rs) == 34
    assert {r["ts"][:10] for r in rs} == {"2026-11-24"}
    assert since == "2026-11-24T07:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-11-24T08:30", False, "2026-11-24T15:30:00.000Z"),
        ("2026-11-24 08:30", False, "2026-11-24T15:30:00.000Z"),
        ("2026-11-24T08:30:00Z", False, "2026-11-24T08:30:00.000Z"),
        ("2026-07-01", False, "2026-07-01T06:00:00.000Z"),  # summer time
        ("24h", False, "2026-11-29T12:00:00.000Z"),
        ("7d", False, "2026-11-23T12:00:00.000Z"),
        ("today", False, "2026-11-30T07:00:00.000Z"),
        ("yesterday", True, "2026-11-30T07:00:00.000Z"),
    ],
)
def test_parse_when(text: str, end: bool, expected: str) -> None:
    assert parse_when(text, DENVER, now=NOW, end=end) == expected


@pytest.mark.parametrize("bad", ["last tuesday", "2026-13-01", "5y"])
def test_parse_when_rejects_what_it_cannot_read(bad: str) -> None:
    with pytest.raises(AuditError, match="not a time"):
        parse_when(bad, DENVER, now=NOW)


@pytest.mark.parametrize("bad", ["jdoe", "email:x@y", "ip:10.0.0.999", "user:"])
def test_who_rejects_bad_input(bad: str) -> None:
    with pytest.raises(AuditError, match="--who"):
        Who.parse(bad)


def test_search_of_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no such log directory"):
        list(search(tmp_path / "nope", Filter()))


def test_the_report_counts_blocks_by_day_hour_group_and_person(sample: Path) -> None:
    s = summarise(search(sample, Filter()), DENVER)
    assert s.blocked == 60
    assert dict(s.blocked_by_day) == {"2026-11-23": 20, "2026-11-24": 20, "2026-11-25": 20}
    assert dict(s.blocked_by_hour) == {8: 60}
    assert dict(s.blocked_by_group) == {"staff": 30, "students": 30}
    assert dict(s.blocked_by_person) == {"user:jdoe": 30, "device:cart-3": 30}
    assert dict(s.blocked_destinations) == {"www.facebook.com": 30, "m.tiktok.com": 30}
    assert dict(s.grants_used) == {"G-1": 9}
    assert dict(s.emergencies_used) == {"E-1": 3}
    assert next(e.reason for e in s.emergencies) == "lockdown drill: parents must be reached"
    assert [eid for eid, _ in s.awaiting_review] == ["E-2"]
    text = render_text(s)
    assert "lockdown drill" in text and "my child is ill" in text and "G-1" in text


def html_report(sample: Path) -> str:
    return render_html(summarise(search(sample, Filter()), DENVER), district="Example USD")


def test_the_html_report_is_self_contained(sample: Path) -> None:
    page = html_report(sample)
    assert page.count("<svg") == 5
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page and "url(" not in page


def test_the_html_report_escapes_what_people_typed(tmp_path: Path, open_log) -> None:
    log = open_log()
    log.write(
        admin_event(
            "emergency_started",
            by="x",
            source="cli",
            target="E-9",
            reason="<script>alert(1)</script>",
        )
    )
    log.close()
    page = render_html(summarise(search(tmp_path / "log", Filter()), DENVER))
    assert "<script>alert" not in page and "&lt;script&gt;" in page


CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_html_report_renders_in_headless_chromium(sample: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(html_report(sample), encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]

    def screenshot(html: Path) -> bytes:
        shot = html.with_suffix(".png")
        subprocess.run(
            [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,3000", html.as_uri()],
            capture_output=True,
            timeout=90,
            check=True,
        )
        return shot.read_bytes()

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    data = screenshot(page)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 3000)
    assert len(data) > 3 * len(screenshot(blank))  # charts and text, not an empty page
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        timeout=90,
        check=True,
        text=True,
    ).stdout
    assert dom.count("<svg") == 5
    assert dom.count("<rect") >= 24 + 3 + 2 + 2 + 2
    assert "Top blocked destinations" in dom


def _every_record(log_dir: Path) -> list[dict]:
    import json as _json

    from socialguard.audit.files import iter_lines, list_log_files

    out = []
    for lf in list_log_files(log_dir):
        out.extend(_json.loads(raw) for _, raw in iter_lines(lf.path))
    return sorted(out, key=lambda r: (r["ts"], r["node"], r["seq"]))


@pytest.mark.parametrize(
    "flt",
    [
        Filter(),
        Filter(action="block", types=frozenset({"decision"})),
        Filter(basis="grant", who=Who.parse("device:cart-3")),
        Filter(who=Who.parse("ip:10.0.1.7"), since="2026-11-24T15:00:00.000Z"),
        Filter(category="social", until="2026-11-24T15:05:00.000Z"),
        Filter(types=frozenset({"admin"})),
        Filter(who=Who.parse("user:jdoe"), host="facebook.com"),
    ],
    ids=lambda f: repr(f)[:60],
)
def test_fast_byte_filters_agree_with_the_parsed_records(sample: Path, flt: Filter) -> None:
    expected = [r for r in _every_record(sample) if flt.matches(r)]
    got = [f.record for f in search(sample, flt)]
    key = lambda r: (r["ts"], r["node"], r["seq"])  # noqa: E731
    assert sorted(got, key=key) == expected
    assert [r["ts"] for r in got] == sorted(r["ts"] for r in got)


@pytest.mark.parametrize(
    "needle", [b'"user":"jdoe"', b"cart-3", b'"type":"admin"', b"nothing-here"]
)
def test_block_search_finds_the_same_lines_and_numbers_as_reading_every_line(
    sample: Path, tmp_path: Path, needle: bytes
) -> None:
    from socialguard.audit.files import CHUNK, iter_lines, iter_lines_containing, list_log_files

    paths = [lf.path for lf in list_log_files(sample)]
    big = tmp_path / "big.jsonl"  # several blocks, and a torn last line that matches
    lines = b"".join(raw for p in paths for _, raw in iter_lines(p))
    big.write_bytes(lines * (2 * CHUNK // len(lines) + 1) + b'{"torn":' + needle)
    for p in [*paths, big]:
        expected = [(n, raw) for n, raw in iter_lines(p) if needle in raw]
        assert list(iter_lines_containing(p, needle)) == expected


def test_search_by_user_finds_what_was_done_by_and_for_the_person(sample: Path) -> None:
    """A self-declared emergency is filed as `by: user:NAME` (the block page's person key) and
    scoped to the person; a grant names them in its `who`: `--who user:NAME` finds both."""
    bwong = found(sample, who=Who.parse("user:bwong"), types=frozenset({"admin"}))
    assert [r["target"] for r in bwong] == ["E-2"]
    asmith = found(sample, who=Who.parse("user:asmith"), types=frozenset({"admin"}))
    assert [r["target"] for r in asmith] == ["G-1"]
