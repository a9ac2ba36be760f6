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
