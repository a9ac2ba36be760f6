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
