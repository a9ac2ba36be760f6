"""Issue 22: administrators are real OS users, and each may do what their role says, no more.

Every case runs the real `socialguard` as a user the test creates (`runuser`), on a state
directory shared with the administrators' OS group (2770), and asserts on the exit code, the
message, what the store holds and the `admin_refused` event each refusal leaves for the decision
log.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import Accounts, run_as  # type: ignore[import-not-found]
from socialguard.overrides.sqlite import SqliteStore

EXIT_REFUSED = 5

RULES = """\
district:
  name: Test District
  timezone: America/Denver
services:
  facebook:
    name: Facebook
    domains: [facebook.com, fbcdn.net]
  tiktok:
    name: TikTok
    domains: [tiktok.com]
groups:
  school-a:
    networks: [10.1.0.0/16]
    include: [school-a-library]
  school-a-library:
    networks: [10.1.9.0/24]
  school-b:
    networks: [10.2.0.0/16]
categories:
  social:
    domains: [facebook.com, fbcdn.net, tiktok.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [school-a, school-b]
    what: {categories: [social]}
    action: block
    bypass: [grant, emergency]
default: allow
roles:
  school-a-admins:
    members: [user:{a_admin}]
    groups: [school-a]
    grant_max: 2h
  facebook-emergencies:
    members: [os-group:{comms}]
    services: [facebook]
    emergencies: services
    requests: false
  district:
    members: [user:{supt}]
    emergencies: all
    review: true
"""


class Site:
    """The gateway as a test sets it up: accounts, a rules file and a shared state directory."""

    def __init__(self, accounts: Accounts, base: Path) -> None:
        self.accounts = accounts
        self.admins = accounts.group("adm")  # the group the state directory is shared with
        self.comms = accounts.group("com")
        self.a_admin = accounts.user("a", self.admins)
        self.supt = accounts.user("s", self.admins)
        self.comms_officer = accounts.user("c", self.admins, self.comms)
        self.outsider = accounts.user("o")
        self.rules = base / "rules.yaml"
        self.rules.write_text(
            RULES.replace("{a_admin}", self.a_admin)
            .replace("{comms}", self.comms)
            .replace("{supt}", self.supt)
        )
        self.rules.chmod(0o644)
        self.state = base / "state"
        self.state.mkdir()
        os.chown(self.state, 0, accounts_gid(self.admins))
        self.state.chmod(0o2770)

    def sg(self, user: str | None, *args: str, **env: str) -> Any:
        return run_as(
            user,
            *args,
            env={
                "SOCIALGUARD_STATE": str(self.state),
                "SOCIALGUARD_RULES": str(self.rules),
                **env,
            },
        )

    def store(self) -> SqliteStore:
        return SqliteStore(self.state / "socialguard.db")

    def refusals(self) -> list[Any]:
        s = self.store()
        try:
            return [e for e in s.admin_events() if e.action == "admin_refused"]
        finally:
            s.close()

    def grants(self) -> list[Any]:
        s = self.store()
        try:
            return s.list_grants(datetime.now(UTC))
        finally:
            s.close()


def accounts_gid(name: str) -> int:
    import grp

    return grp.getgrnam(name).gr_gid


@pytest.fixture
def site(accounts: Accounts, shared_dir: Path) -> Site:
    return Site(accounts, shared_dir)


GRANT: Callable[..., tuple[str, ...]] = lambda who, length="1h", *more: (  # noqa: E731
    "grant",
    "add",
    "--who",
    who,
    "--site",
    "facebook.com",
    "--for",
    length,
    "--reason",
    "Yearbook page",
    *more,
)


def test_an_admin_grants_for_a_group_of_their_school(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("group:school-a"))
    assert r.returncode == 0, r.stderr
    (g,) = site.grants()
    assert (g.grant.who, g.grant.by) == ("group:school-a", site.a_admin)


def test_a_group_their_school_includes_is_theirs_too(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("group:school-a-library"))
    assert r.returncode == 0, r.stderr


def test_a_grant_for_another_school_is_refused_and_logged(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("group:school-b"))
    assert r.returncode == EXIT_REFUSED
    assert "refused: role school-a-admins: group:school-b is not in its groups (school-a)" in (
        r.stderr
    )
    assert site.grants() == []
    (ev,) = site.refusals()
    assert (ev.by, ev.target, ev.details["attempted"]) == (
        site.a_admin,
        "group:school-b",
        "grant_add",
    )
    assert ev.details["sites"] == ["facebook.com"]


def test_an_address_in_another_school_is_refused(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("ip:10.2.0.7"))
    assert r.returncode == EXIT_REFUSED, r.stderr
    assert site.grants() == []


def test_a_grant_longer_than_the_role_allows_is_refused(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("group:school-a", "3h"))
    assert r.returncode == EXIT_REFUSED
    assert "grants at most 2h" in r.stderr
    assert site.grants() == []
    assert [e.details["attempted"] for e in site.refusals()] == ["grant_add"]


def test_by_cannot_claim_another_name(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("group:school-a", "1h", "--by", "supt.garcia"))
    assert r.returncode == EXIT_REFUSED
    assert "--by supt.garcia" in r.stderr and site.a_admin in r.stderr
    assert site.grants() == []
    (ev,) = site.refusals()
    assert (ev.by, ev.details["claimed"]) == (site.a_admin, "supt.garcia")


def test_by_repeating_ones_own_name_keeps_scripts_working(site: Site) -> None:
    r = site.sg(site.a_admin, *GRANT("group:school-a", "1h", "--by", site.a_admin))
    assert r.returncode == 0, r.stderr


def test_sudo_variables_from_a_non_root_caller_are_ignored(site: Site) -> None:
    supt_uid = str(site.accounts.uid(site.supt))
    r = site.sg(site.a_admin, *GRANT("group:school-b"), SUDO_UID=supt_uid, SUDO_USER=site.supt)
    assert r.returncode == EXIT_REFUSED
    (ev,) = site.refusals()
    assert ev.by == site.a_admin


def test_root_under_sudo_acts_as_the_sudo_user(site: Site) -> None:
    a_uid = str(site.accounts.uid(site.a_admin))
    r = site.sg(None, *GRANT("group:school-b"), SUDO_UID=a_uid, SUDO_USER="someone-else")
    assert r.returncode == EXIT_REFUSED
    (ev,) = site.refusals()
    assert ev.by == site.a_admin
    ok = site.sg(None, *GRANT("group:school-a"), SUDO_UID=a_uid)
    assert ok.returncode == 0, ok.stderr
    assert site.grants()[0].grant.by == site.a_admin


def test_root_without_sudo_needs_a_role_naming_root(site: Site) -> None:
    r = site.sg(None, *GRANT("group:school-a"))
    assert r.returncode == EXIT_REFUSED
    assert "root is named by no role" in r.stderr


def test_an_emergency_on_the_service_the_role_allows(site: Site) -> None:
    officer = site.comms_officer
    ok = site.sg(
        officer, "emergency", "start", "--site", "service:facebook", "--reason", "Lockdown"
    )
    assert ok.returncode == 0, ok.stderr
    other = site.sg(officer, "emergency", "start", "--site", "tiktok.com", "--reason", "Lockdown")
    assert other.returncode == EXIT_REFUSED
    assert "tiktok is not among its services (facebook)" in other.stderr
    every = site.sg(officer, "emergency", "start", "--reason", "Lockdown")
    assert every.returncode == EXIT_REFUSED
    assert [e.details["attempted"] for e in site.refusals()] == [
        "emergency_start",
        "emergency_start",
    ]
    # a role that may not declare emergencies may not stop one either
    stop = site.sg(site.a_admin, "emergency", "stop", "--reason", "over")
    assert stop.returncode == EXIT_REFUSED
    assert site.sg(officer, "emergency", "stop", "--reason", "over").returncode == 0


def test_review_by_a_non_reviewer_is_refused(site: Site) -> None:
    r = site.sg(site.a_admin, "emergency", "review")
    assert r.returncode == EXIT_REFUSED
    assert "may not review self-declared emergencies" in r.stderr
    assert [e.details["attempted"] for e in site.refusals()] == ["emergency_review"]
    ok = site.sg(site.supt, "emergency", "review")
    assert ok.returncode == 0, ok.stderr


def test_the_shared_store_is_the_admins_groups_and_no_one_elses(site: Site) -> None:
    assert site.sg(site.a_admin, *GRANT("group:school-a")).returncode == 0
    db = site.state / "socialguard.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o660
    assert stat.S_IMODE(site.state.stat().st_mode) == 0o2770
    service = site.store()  # the running proxy holds the store open: -wal and -shm exist
    try:
        assert service.list_grants(datetime.now(UTC))
        # another admin writes through the service's -wal/-shm, and the service reads it
        assert site.sg(site.supt, *GRANT("group:school-b")).returncode == 0
        assert len(service.list_grants(datetime.now(UTC))) == 2
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            st = f.stat()
            assert stat.S_IMODE(st.st_mode) == 0o660, f
            assert st.st_gid == accounts_gid(site.admins), f
    finally:
        service.close()
    # someone outside the group is stopped by the file system, before any role
    r = site.sg(site.outsider, "grant", "list", "--json")
    assert r.returncode == 4, r.stdout
    assert "permission" in r.stderr.lower()
