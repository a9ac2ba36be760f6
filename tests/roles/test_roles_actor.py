"""Who the actor is: the real OS user; SUDO_UID only when root runs under sudo."""

from __future__ import annotations

import pwd

from socialguard.cli.actor import os_admin
from socialguard.cli.rules_cmd import _publisher

NOBODY = pwd.getpwnam("nobody")


def test_root_under_sudo_is_the_sudo_user() -> None:
    admin = os_admin({"SUDO_UID": str(NOBODY.pw_uid), "SUDO_USER": "mallory"}, uid=0)
    assert admin.user == "nobody"
    assert "nogroup" in admin.os_groups or admin.os_groups


def test_sudo_variables_from_anyone_else_are_ignored() -> None:
    admin = os_admin({"SUDO_UID": "0", "SUDO_USER": "root"}, uid=NOBODY.pw_uid)
    assert admin.user == "nobody"


def test_root_without_sudo_is_root() -> None:
    assert os_admin({}, uid=0).user == "root"


def test_an_unknown_uid_is_named_by_number() -> None:
    assert os_admin({}, uid=2_000_000_001).user == "uid:2000000001"


def test_rules_apply_keeps_the_os_user_beside_a_by() -> None:
    assert _publisher(None, "alice") == "alice"
    assert _publisher("alice", "alice") == "alice"
    assert _publisher("it-admin", "alice") == "it-admin (os user alice)"
