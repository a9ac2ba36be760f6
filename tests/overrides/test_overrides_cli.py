"""`socialguard grant ...` and `socialguard emergency ...` against a real SQLite file and a real
policy.

Most tests run the real command in-process (typer's CliRunner, as sqlite-utils tests its CLI); a few
run it as a separate process, the way an administrator does.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.overrides import Actor, open_store
from socialguard.overrides.sqlite import SqliteStore

POLICY = """\
district:
  name: Example School District
  timezone: America/Denver
  policy_url: https://www.example.k12.mt.us/board/policies/social-networking
groups:
  staff:
    networks: [10.20.0.0/16]
  admins:
    networks: [10.10.5.0/24]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
overrides:
  grant_max: 8h
  emergency_minutes: 30
  emergency_per_day: 2
default: allow
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    rules = tmp_path / "policy.yaml"
    rules.write_text(POLICY, encoding="utf-8")
    return {
        "SOCIALGUARD_STATE": str(tmp_path / "state"),
        "SOCIALGUARD_RULES": str(rules),
        "SUDO_USER": "",
    }


@pytest.fixture
def sg(env: dict[str, str]):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
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


def test_grant_add_prints_id_and_end_in_the_district_zone(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    before = datetime.now(UTC)
    out = sg(
        "grant",
        "add",
        "--who",
        "user:jdoe",
        "--site",
        "facebook.com",
        "--for",
        "2h",
        "--reason",
        "Yearbook page",
        "--by",
        "principal.smith",
    ).stdout.splitlines()
    (record,) = store.list_grants(datetime.now(UTC))
    g = record.grant
    assert out[0] == g.id
    local = g.ends.astimezone(ZoneInfo("America/Denver")).strftime("%Y-%m-%d %H:%M:%S %Z")
    assert out[1] == f"user:jdoe may reach facebook.com until {local}"
    assert timedelta(hours=2) <= g.ends - before < timedelta(hours=2, seconds=30)
    assert (g.who, g.sites, g.reason, g.by) == (
        "user:jdoe",
        ("facebook.com",),
        "Yearbook page",
        "principal.smith",
    )


def test_grant_add_with_several_sites_and_until(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    end = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    sg(
        "grant",
        "add",
        "--who",
        "group:admins",
        "--site",
        "FACEBOOK.COM.",
        "--site",
        "category:social",
        "--until",
        end.isoformat(),
        "--reason",
        "Board meeting stream",
    )
    (record,) = store.list_grants(datetime.now(UTC))
    assert record.grant.sites == ("facebook.com", "category:social")
    assert record.grant.ends == end


def test_by_defaults_to_the_sudo_user_then_the_os_user(  # type: ignore[no-untyped-def]
    sg, env: dict[str, str], store: SqliteStore
) -> None:
    # The sudo user is the account of SUDO_UID (sudo sets it; only root is trusted with it), not
    # the free-text SUDO_USER.
    env["SUDO_USER"] = "mrs.jones"
    env["SUDO_UID"] = str(pwd.getpwnam("nobody").pw_uid)
    sg(
        "grant",
        "add",
        "--who",
        "ip:10.20.1.5",
        "--site",
        "x.example",
        "--for",
        "45m",
        "--reason",
        "r",
    )
    assert store.list_grants(datetime.now(UTC))[0].grant.by == "nobody"
    (ev,) = store.admin_events()
    assert ev.by == "nobody" and ev.source  # host and tty of the invocation


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "facebook.com", "--for", "1h", "--reason", "r"], "--who: required"),
        (
            ["--who", "jdoe", "--site", "facebook.com", "--for", "1h", "--reason", "r"],
            "--who: 'jdoe' should be user:NAME",
        ),
        (
            ["--who", "group:staf", "--site", "facebook.com", "--for", "1h", "--reason", "r"],
            "--who: unknown group 'staf' (known: admins, staff)",
        ),
        (
            ["--who", "ip:10.20.1.500", "--site", "facebook.com", "--for", "1h", "--reason", "r"],
            "--who: '10.20.1.500' is not an IP address",
        ),
        (["--who", "user:jdoe", "--for", "1h", "--reason", "r"], "--site: at least one site"),
        (
            ["--who", "user:jdoe", "--site", "category:socail", "--for", "1h", "--reason", "r"],
            "--site: unknown category 'socail' (known: social)",
        ),
        (
            [
                "--who",
                "user:jdoe",
                "--site",
                "https://facebook.com/x",
                "--for",
                "1h",
                "--reason",
                "r",
            ],
            "--site: 'https://facebook.com/x' is not a domain",
        ),
        (
            ["--who", "user:jdoe", "--site", "facebook.com", "--for", "2 hours", "--reason", "r"],
            "--for: '2 hours' is not a duration",
        ),
        (
            ["--who", "user:jdoe", "--site", "facebook.com", "--for", "0m", "--reason", "r"],
            "--for: the duration must be longer than zero",
        ),
        (
            ["--who", "user:jdoe", "--site", "facebook.com", "--for", "9h", "--reason", "r"],
            "--for: longer than the policy allows (overrides.grant_max is 8h)",
        ),
        (
            [
                "--who",
                "user:jdoe",
                "--site",
                "facebook.com",
                "--until",
                "2020-01-01T10:00",
                "--reason",
                "r",
            ],
            "--until: 2020-01-01T10:00 is in the past",
        ),
        (
            [
                "--who",
                "user:jdoe",
                "--site",
                "facebook.com",
                "--until",
                "tomorrow",
                "--reason",
                "r",
            ],
            "--until: 'tomorrow' is not a time",
        ),
        (
            [
                "--who",
                "user:jdoe",
                "--site",
                "facebook.com",
                "--for",
                "1h",
                "--until",
                "23:59",
                "--reason",
                "r",
            ],
            "--for / --until: give one, not both",
        ),
        (
            ["--who", "user:jdoe", "--site", "facebook.com", "--reason", "r"],
            "--for / --until: say how long",
        ),
        (
            ["--who", "user:jdoe", "--site", "facebook.com", "--for", "1h", "--reason", "  "],
            "--reason: a reason is required",
        ),
        (
            ["--who", "user:jdoe", "--site", "facebook.com", "--for", "1h"],
            "--reason: a reason is required",
        ),
    ],
)
def test_grant_add_bad_input_names_the_field_and_writes_nothing(  # type: ignore[no-untyped-def]
    sg, store: SqliteStore, args: list[str], message: str
) -> None:
    before = store.change_counter()
    result = sg("grant", "add", *args, code=2)
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stdout == ""
    assert store.change_counter() == before and store.admin_events() == []


def test_grant_add_without_a_policy_is_refused(sg, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env["SOCIALGUARD_RULES"] = str(tmp_path / "missing.yaml")
    result = sg(
        "grant",
        "add",
        "--who",
        "user:jdoe",
        "--site",
        "facebook.com",
        "--for",
        "1h",
        "--reason",
        "r",
        code=2,
    )
    assert "missing.yaml: rules file not found" in result.stderr


def test_grant_add_with_a_broken_policy_reports_file_and_line(  # type: ignore[no-untyped-def]
    sg, env: dict[str, str]
) -> None:
    Path(env["SOCIALGUARD_RULES"]).write_text(POLICY.replace("    who: [staff]", "    who: [staf]"))
    result = sg(
        "grant",
        "add",
        "--who",
        "user:jdoe",
        "--site",
        "facebook.com",
        "--for",
        "1h",
        "--reason",
        "r",
        code=2,
    )
    assert "policy.yaml:" in result.stderr and "staf" in result.stderr


def test_grant_list_show_revoke(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    gid = sg(
        "grant",
        "add",
        "--who",
        "user:jdoe",
        "--site",
        "facebook.com",
        "--for",
        "1h",
        "--reason",
        "Yearbook",
    ).stdout.split()[0]
    listing = sg("grant", "list").stdout
    assert gid in listing and "active" in listing and "Yearbook" in listing
    data = json.loads(sg("grant", "list", "--json").stdout)
    assert [(d["id"], d["status"], d["sites"]) for d in data] == [(gid, "active", ["facebook.com"])]
    assert "who:           user:jdoe" in sg("grant", "show", gid).stdout
    assert sg("grant", "revoke", gid, "--reason", "Done early").stdout.startswith(f"revoked {gid}")
    assert sg("grant", "list").stdout.strip() == "(none)"
    (shown,) = json.loads(sg("grant", "list", "--all", "--json").stdout)
    assert (shown["status"], shown["revoke_reason"]) == ("revoked", "Done early")
    assert json.loads(sg("grant", "show", gid, "--json").stdout)["status"] == "revoked"
    assert [e.action for e in store.admin_events()] == ["grant_added", "grant_revoked"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grant", "show", "g-nope"], "no grant with id 'g-nope'"),
        (["grant", "revoke", "g-nope", "--reason", "r"], "no grant with id 'g-nope'"),
        (["grant", "revoke", "g-nope"], "--reason: a reason is required"),
        (["grant", "approve", "r-nope", "--for", "1h"], "no access request with id 'r-nope'"),
        (["grant", "approve", "r-nope"], "--for / --until: say how long"),
        (["grant", "approve", "r-nope", "--for", "1d"], "longer than the policy allows"),
        (["grant", "deny", "r-nope", "--reason", "r"], "no access request with id 'r-nope'"),
        (["grant", "deny", "r-nope"], "--reason: a reason is required"),
        (["emergency", "start"], "--reason: a reason is required"),
        (
            ["emergency", "start", "--reason", "r", "--scope", "group:nobody"],
            "--scope: unknown group 'nobody'",
        ),
        (
            ["emergency", "start", "--reason", "r", "--scope", "user:jdoe"],
            "--scope: 'user:jdoe' should be all or group:NAME",
        ),
        (
            ["emergency", "start", "--reason", "r", "--for", "soon"],
            "--for: 'soon' is not a duration",
        ),
        (["emergency", "stop", "e-nope"], "no emergency with id 'e-nope'"),
        (["emergency", "ack", "e-nope"], "no emergency with id 'e-nope'"),
        (["emergency", "ack", "e-nope", "--note", " "], "--note: empty"),
    ],
)
def test_bad_input_everywhere_exits_2_with_the_field(  # type: ignore[no-untyped-def]
    sg, store: SqliteStore, args: list[str], message: str
) -> None:
    before = store.change_counter()
    result = sg(*args, code=2)
    assert message in result.stderr
    assert store.change_counter() == before


def _file_request(store: SqliteStore) -> str:
    return store.file_request(
        who="user:jdoe",
        site="facebook.com",
        url="https://www.facebook.com/groups/pta",
        rule_id="staff-social",
        decision_id="d-1",
        reason="PTA page update",
        client_ip="10.20.1.5",
        actor=Actor(by="user:jdoe", source="10.20.1.5"),
    ).id


def test_requests_approve_creates_a_grant(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    rid = _file_request(store)
    listing = sg("grant", "requests").stdout
    assert rid in listing and "PTA page update" in listing and "pending" in listing
    out = sg("grant", "approve", rid, "--for", "1h", "--by", "principal.smith").stdout.splitlines()
    gid = out[0]
    assert out[1].startswith(f"approved {rid}: user:jdoe may reach facebook.com until ")
    g = store.get_grant(gid).grant
    assert (g.request_id, g.by) == (rid, "principal.smith")
    assert sg("grant", "requests").stdout.strip() == "(none)"
    (answered,) = json.loads(sg("grant", "requests", "--all", "--json").stdout)
    assert (answered["status"], answered["grant_id"]) == ("approved", gid)
    result = sg("grant", "approve", rid, "--for", "1h", code=2)
    assert f"request {rid} was already approved" in result.stderr


def test_requests_deny(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    rid = _file_request(store)
    assert sg("grant", "deny", rid, "--reason", "Not for individual use").stdout.startswith(
        f"denied {rid}"
    )
    assert store.get_request(rid).status == "denied"
    assert store.active(datetime.now(UTC)).grants == ()


def test_emergency_start_status_stop(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    out = sg("emergency", "start", "--reason", "Lockdown", "--for", "3h").stdout.splitlines()
    eid = out[0]
    assert out[1].startswith("emergency in force for all until ")
    status = sg("emergency", "status").stdout
    assert eid in status and "admin" in status and "(every site)" in status
    group = sg("emergency", "start", "--reason", "Drill", "--scope", "group:staff").stdout.split()[
        0
    ]
    assert {d["id"] for d in json.loads(sg("emergency", "status", "--json").stdout)} == {eid, group}
    assert sg("emergency", "stop", group).stdout.strip() == f"stopped {group} (group:staff)"
    assert sg("emergency", "stop").stdout.strip() == f"stopped {eid} (all)"
    assert sg("emergency", "status").stdout.strip() == "no emergency in force"
    assert len(json.loads(sg("emergency", "status", "--all", "--json").stdout)) == 2


def test_emergency_all_needs_no_policy(sg, env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env["SOCIALGUARD_RULES"] = str(tmp_path / "missing.yaml")
    eid = sg("emergency", "start", "--reason", "Lockdown").stdout.split()[0]
    assert eid.startswith("e-")


def test_emergency_review_and_ack(sg, store: SqliteStore) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    r = store.declare_self_emergency(
        scope="ip:10.20.1.5",
        person="ip:10.20.1.5",
        site="facebook.com",
        url="https://www.facebook.com/",
        reason="School lockdown notice",
        actor=Actor(by="ip:10.20.1.5", source="10.20.1.5"),
        minutes=30,
        per_day=2,
        day_start=now - timedelta(hours=1),
    )
    eid = r.emergency.id
    review = sg("emergency", "review").stdout
    assert eid in review and "School lockdown notice" in review
    assert sg("emergency", "ack", eid, "--note", "Genuine").stdout.strip() == (
        f"acknowledged {eid} (ip:10.20.1.5)"
    )
    assert sg("emergency", "review").stdout.strip() == "nothing to review"
    result = sg("emergency", "ack", eid, code=2)
    assert "already acknowledged" in result.stderr


def test_the_real_command_finds_the_state_from_the_option(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """As an administrator runs it: a separate process, --state instead of the environment."""
    state = tmp_path / "elsewhere"
    proc_env = {**os.environ, "SOCIALGUARD_RULES": env["SOCIALGUARD_RULES"]}
    proc_env.pop("SOCIALGUARD_STATE", None)
    add = subprocess.run(
        [
            sys.executable,
            "-m",
            "socialguard",
            "grant",
            "add",
            "--state",
            str(state),
            "--who",
            "user:jdoe",
            "--site",
            "facebook.com",
            "--for",
            "30m",
            "--reason",
            "r",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=proc_env,
    )
    assert add.returncode == 0, add.stderr
    assert (state / "socialguard.db").is_file()
    listing = subprocess.run(
        [sys.executable, "-m", "socialguard", "grant", "list", "--state", str(state), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=proc_env,
    )
    assert [g["id"] for g in json.loads(listing.stdout)] == [add.stdout.split()[0]]


def test_a_damaged_store_file_is_a_clear_error(sg, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    state = Path(env["SOCIALGUARD_STATE"])
    state.mkdir(parents=True)
    (state / "socialguard.db").write_bytes(b"not a database, just a text file " * 8)
    result = sg("grant", "list", code=2)
    assert result.stderr.strip().startswith(
        f"error: {state / 'socialguard.db'}: not an SQLite database (a foreign or corrupt file)"
    )
