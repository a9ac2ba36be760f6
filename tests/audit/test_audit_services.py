"""The decision log speaks services: each record names its service, and search finds them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from audit_helpers import make_decision
from typer.testing import CliRunner

from socialguard.audit import decision_event, new_decision_id
from socialguard.audit.reader import Filter, search
from socialguard.cli import app


def service_event(host: str, service: str | None, **kw: Any) -> dict[str, Any]:
    d = replace(make_decision(host), service=service)
    return decision_event(
        d, decision_id=new_decision_id(), stage="request", client=d.principal.client_ip, **kw
    )


def test_a_record_names_its_service_and_a_host_of_none_has_no_field() -> None:
    assert service_event("static.xx.fbcdn.net", "facebook")["service"] == "facebook"
    assert "service" not in service_event("www.example.org", None)


def _sample(open_log: Any) -> None:
    log = open_log("n1-w0")
    for host, service in [
        ("www.facebook.com", "facebook"),
        ("static.xx.fbcdn.net", "facebook"),
        ("www.tiktok.com", "tiktok"),
        ("www.example.org", None),
    ]:
        log.write(service_event(host, service))
    log.close()


def test_search_by_service_finds_every_domain_of_it(tmp_path: Path, open_log: Any) -> None:
    _sample(open_log)
    found = [f.record["host"] for f in search(tmp_path / "log", Filter(service="facebook"))]
    assert found == ["www.facebook.com", "static.xx.fbcdn.net"]


def test_audit_search_service_from_the_cli(tmp_path: Path, open_log: Any) -> None:
    _sample(open_log)
    result = CliRunner().invoke(
        app,
        ["audit", "search", "--service", "TikTok", "--json", "--log-dir", str(tmp_path / "log"),
         "--tz", "America/Denver"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    hosts = [json.loads(line)["host"] for line in result.stdout.splitlines()]
    assert hosts == ["www.tiktok.com"]


def _page_load(open_log: Any) -> None:
    """jdoe opens Facebook twice (each time the page and three assets), bwong opens TikTok once,
    and a tab polls TikTok's API ten times: 3 visits, 18 requests."""
    log = open_log("n1-w0")
    for _ in range(2):
        log.write(service_event("www.facebook.com", "facebook", visit=True))
        for asset in ("static.xx.fbcdn.net", "scontent.xx.fbcdn.net", "connect.facebook.net"):
            log.write(service_event(asset, "facebook"))
    bwong = replace(make_decision("www.tiktok.com", user="bwong"), service="tiktok")
    log.write(
        decision_event(bwong, decision_id=new_decision_id(), stage="request", client="10.0.0.6",
                       visit=True)
    )  # fmt: skip
    for _ in range(10):
        log.write(service_event("api.tiktok.com", "tiktok"))
    log.close()


def test_the_report_counts_blocked_visits_per_service_and_person(
    tmp_path: Path, open_log: Any
) -> None:
    from audit_helpers import DENVER

    from socialguard.audit.reader import Filter, search
    from socialguard.audit.report import render_html, render_text, summarise

    _page_load(open_log)
    s = summarise(search(tmp_path / "log", Filter()), DENVER)
    assert s.blocked == 19 and s.blocked_visits == 3
    assert s.services_by_visits() == [("facebook", 2, 8), ("tiktok", 1, 11)]
    assert s.blocked_visits_by_person == {"user:jdoe": 2, "user:bwong": 1}
    text = render_text(s)
    assert "Blocked visits (pages opened): 3" in text
    assert "  facebook         2 visits         8 requests" in text
    page = render_html(s)
    assert "<h2>Blocked visits by service</h2>" in page and "<td>facebook</td>" in page


def test_audit_report_json_carries_visits(tmp_path: Path, open_log: Any) -> None:
    _page_load(open_log)
    result = CliRunner().invoke(
        app,
        ["audit", "report", "--json", "--log-dir", str(tmp_path / "log"), "--tz", "America/Denver"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["blocked_visits"] == 3
    assert out["blocked_visits_by_service"]["tiktok"] == {"visits": 1, "requests": 11}


def _search(tmp_path: Path, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        ["audit", "search", *args, "--log-dir", str(tmp_path / "log"), "--tz", "America/Denver"],
        env={"COLUMNS": "200", "NO_COLOR": "1"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_audit_search_table_and_csv_have_a_service_column(tmp_path: Path, open_log: Any) -> None:
    import csv
    import io

    _sample(open_log)
    rows = list(csv.DictReader(io.StringIO(_search(tmp_path, "--csv"))))
    assert [(r["host"], r["service"]) for r in rows] == [
        ("www.facebook.com", "facebook"),
        ("static.xx.fbcdn.net", "facebook"),
        ("www.tiktok.com", "tiktok"),
        ("www.example.org", ""),
    ]
    header, *lines = _search(tmp_path).splitlines()
    assert header.split()[6:8] == ["CATEGORY", "SERVICE"]
    at = header.index("SERVICE")
    fbcdn = next(x for x in lines if "static.xx.fbcdn.net" in x)
    assert fbcdn[at:].split()[0] == "facebook"
