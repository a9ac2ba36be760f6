"""`grant add` speaks services: a domain opens its whole service, --domain-only keeps it alone,
service:ID names one; what a grant opens is said in the service's name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.overrides import open_store
from socialguard.overrides.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "SOCIALGUARD_STATE": str(tmp_path / "state"),
        "SOCIALGUARD_RULES": str(ROOT / "rules" / "policy.yaml"),
        "SUDO_USER": "",
    }


@pytest.fixture
def sg(env: dict[str, str]) -> Any:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return run


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[SqliteStore]:
    s = open_store(Path(env["SOCIALGUARD_STATE"]) / "socialguard.db")
    assert isinstance(s, SqliteStore)
    yield s
    s.close()


def _add(sg: Any, *sites: str, code: int = 0, extra: tuple[str, ...] = ()) -> Any:
    args = ["grant", "add", "--who", "user:jdoe", "--for", "1h", "--reason", "Yearbook"]
    for site in sites:
        args += ["--site", site]
    return sg(*args, *extra, code=code)


def test_a_domain_grant_says_it_opens_the_whole_service(sg: Any, store: SqliteStore) -> None:
    out = _add(sg, "www.facebook.com").stdout.splitlines()
    assert out[1].startswith("user:jdoe may reach www.facebook.com (all of Facebook) until ")
    (record,) = store.list_grants(datetime.now(UTC))
    assert record.grant.sites == ("www.facebook.com",)


def test_domain_only_keeps_the_domain_to_itself(sg: Any, store: SqliteStore) -> None:
    out = _add(sg, "www.facebook.com", extra=("--domain-only",)).stdout.splitlines()
    assert out[1].startswith("user:jdoe may reach domain:www.facebook.com until ")
    (record,) = store.list_grants(datetime.now(UTC))
    assert record.grant.sites == ("domain:www.facebook.com",)


def test_a_service_by_id(sg: Any, store: SqliteStore) -> None:
    out = _add(sg, "service:TikTok").stdout.splitlines()
    assert out[1].startswith("user:jdoe may reach service:tiktok (all of TikTok) until ")


def test_an_unknown_service_is_refused_and_nothing_is_written(sg: Any, store: SqliteStore) -> None:
    result = _add(sg, "service:tiktk", code=2)
    assert "--site: unknown service 'tiktk' (did you mean 'tiktok'?)" in result.stderr
    assert store.list_grants(datetime.now(UTC)) == []


def test_check_names_the_service_of_an_asset_host(sg: Any) -> None:
    out = sg(
        "check", "https://static.xx.fbcdn.net/rsrc/app.css", "--client", "10.20.1.5",
        "--at", "2026-12-01T10:00", code=1,  # a block exits 1
    ).stdout  # fmt: skip
    assert "  service:    Facebook (facebook)" in out.splitlines()


def test_an_approved_access_request_opens_the_whole_service(sg: Any, store: SqliteStore) -> None:
    from socialguard.overrides import Actor

    rid = store.file_request(
        who="user:jdoe", site="facebook.com", url="https://www.facebook.com/groups/pta",
        rule_id="staff-social-school-hours", decision_id="d-1", reason="PTA page update",
        client_ip="10.20.1.5", actor=Actor(by="user:jdoe", source="10.20.1.5"),
    ).id  # fmt: skip
    out = sg("grant", "approve", rid, "--for", "1h").stdout.splitlines()
    assert out[1].startswith(f"approved {rid}: user:jdoe may reach facebook.com (all of Facebook)")


def _start(sg: Any, *extra: str, code: int = 0) -> Any:
    return sg("emergency", "start", "--reason", "Lockdown", *extra, code=code)


def test_an_emergency_for_a_domain_says_it_opens_the_whole_service(
    sg: Any, store: SqliteStore
) -> None:
    out = _start(sg, "--site", "www.facebook.com", "--for", "1h").stdout.splitlines()
    assert out[1].startswith(
        "emergency in force for all on www.facebook.com (all of Facebook) until"
    )
    (record,) = store.list_emergencies(datetime.now(UTC))
    assert record.emergency.sites == ("www.facebook.com",)


def test_an_emergency_for_a_domain_alone_and_for_a_service(sg: Any, store: SqliteStore) -> None:
    out = _start(sg, "--site", "www.facebook.com", "--domain-only").stdout.splitlines()
    assert out[1] == "emergency in force for all on domain:www.facebook.com, until stopped"
    out = _start(sg, "--site", "service:TikTok").stdout.splitlines()
    assert out[1] == "emergency in force for all on service:tiktok (all of TikTok), until stopped"
    sites = {r.emergency.sites for r in store.list_emergencies(datetime.now(UTC))}
    assert sites == {("domain:www.facebook.com",), ("service:tiktok",)}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--site", "service:tiktk"), "--site: unknown service 'tiktk' (did you mean 'tiktok'?)"),
        (("--site", "category:nope"), "--site: unknown category 'nope'"),
        (("--domain-only",), "--domain-only: give the domains with --site"),
    ],
)
def test_a_bad_emergency_site_is_refused_and_nothing_is_written(
    sg: Any, store: SqliteStore, extra: tuple[str, ...], message: str
) -> None:
    assert message in _start(sg, *extra, code=2).stderr
    assert store.list_emergencies(datetime.now(UTC)) == []


# -- listings say what each site opens ------------------------------------------------------------


def _file_request(store: SqliteStore, site: str = "facebook.com") -> str:
    from socialguard.overrides import Actor

    return store.file_request(
        who="user:jdoe", site=site, url="https://www.facebook.com/groups/pta",
        rule_id="staff-social-school-hours", decision_id="d-1", reason="PTA page update",
        client_ip="10.20.1.5", actor=Actor(by="user:jdoe", source="10.20.1.5"),
    ).id  # fmt: skip


def _row(out: str, key: str) -> str:
    (line,) = [x for x in out.splitlines() if x.startswith(key)]
    return line


def test_grant_list_and_show_name_the_service_a_site_opens(sg: Any) -> None:
    gid = _add(sg, "www.facebook.com", "domain:fb.me", "service:tiktok").stdout.split()[0]
    row = _row(sg("grant", "list").stdout, gid)
    assert "www.facebook.com (all of Facebook),domain:fb.me,service:tiktok (all of TikTok)" in row
    sites = _row(sg("grant", "show", gid).stdout, "sites:")
    assert sites == (
        "sites:         www.facebook.com (all of Facebook), domain:fb.me, "
        "service:tiktok (all of TikTok)"
    )


def test_grant_requests_name_the_service_a_request_would_open(sg: Any, store: SqliteStore) -> None:
    rid = _file_request(store)
    assert "facebook.com (all of Facebook)" in _row(sg("grant", "requests").stdout, rid)


def test_emergency_status_and_review_name_the_service(sg: Any, store: SqliteStore) -> None:
    from socialguard.overrides import Actor

    eid = _start(sg, "--site", "www.instagram.com").stdout.split()[0]
    assert "www.instagram.com (all of Instagram)" in _row(sg("emergency", "status").stdout, eid)
    self_declared = store.declare_self_emergency(
        scope="device:laptop-17", person="user:jdoe", site="facebook.com",
        url="https://www.facebook.com/", reason="Lockdown notice",
        actor=Actor(by="user:jdoe", source="10.20.1.5"), minutes=30, per_day=2,
        day_start=datetime.now(UTC).replace(hour=0, minute=0),
    ).emergency.id  # fmt: skip
    assert "facebook.com (all of Facebook)" in _row(sg("emergency", "review").stdout, self_declared)
    assert "facebook.com (all of Facebook)" in _row(sg("emergency", "status").stdout, self_declared)


def test_listings_without_readable_rules_show_the_sites_as_stored(
    sg: Any, env: dict[str, str], tmp_path: Path
) -> None:
    gid = _add(sg, "www.facebook.com").stdout.split()[0]
    env["SOCIALGUARD_RULES"] = str(tmp_path / "missing.yaml")
    row = _row(sg("grant", "list").stdout, gid)
    assert "www.facebook.com" in row and "(all of" not in row


def test_a_request_as_json_names_the_service_an_approval_opens(sg: Any, store: SqliteStore) -> None:
    import json

    rid = _file_request(store, site="facebook.com")
    (listed,) = json.loads(sg("grant", "requests", "--json").stdout)
    assert (listed["id"], listed["site"], listed["service"]) == (rid, "facebook.com", "facebook")
    approved = json.loads(sg("grant", "approve", rid, "--for", "1h", "--json").stdout)
    assert approved["request"]["service"] == "facebook"
    assert approved["grant"]["sites"] == ["facebook.com"]  # the domain stands for its service
