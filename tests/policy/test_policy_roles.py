"""`roles:` in the rules file: validated like the rest, every error naming file, line and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from socialguard.errors import PolicyError
from socialguard.policy import load_policy

BASE = """\
district: {name: T, timezone: America/Denver}
services:
  facebook: {name: Facebook, domains: [facebook.com]}
groups:
  school-a: {networks: [10.1.0.0/16]}
  school-b: {networks: [10.2.0.0/16]}
"""


def load(tmp_path: Path, roles: str) -> object:
    f = tmp_path / "policy.yaml"
    f.write_text(BASE + roles)
    return load_policy(f)


def test_roles_compile(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        "roles:\n  a:\n    members: [user:alice, os-group:sg-a]\n    groups: [school-a]\n"
        "    services: [facebook]\n    grant_max: 2h\n    emergencies: services\n",
    )
    (role,) = policy.roles.roles  # type: ignore[attr-defined]
    assert role.members == frozenset({"user:alice", "os-group:sg-a"})
    assert (role.groups, role.services) == (frozenset({"school-a"}), frozenset({"facebook"}))
    assert (role.grant_max, role.emergencies, role.review) == (
        timedelta(hours=2),
        "services",
        False,
    )


def test_no_roles_is_not_configured(tmp_path: Path) -> None:
    assert not load(tmp_path, "").roles.configured  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (
            "  a:\n    members: [user:x]\n    groups: [school-c]\n",
            "policy.yaml:10: roles.a.groups[0]: unknown group 'school-c'",
        ),
        (
            "  a:\n    members: [user:x]\n    services: [facebok]\n",
            "policy.yaml:10: roles.a.services[0]: unknown service 'facebok'",
        ),
        (
            "  a:\n    members: [user:x]\n    grant_max: 9h\n",
            "policy.yaml:10: roles.a.grant_max: 9h is longer than overrides.grant_max (8h)",
        ),
        (
            "  a:\n    members: [alice]\n",
            "policy.yaml:9: roles.a.members[0]: member 'alice' should be user:NAME or os-group",
        ),
        ("  a:\n    members: []\n", "roles.a.members"),
        ("  a:\n    members: [user:x]\n    emergencies: some\n", "roles.a.emergencies"),
        ("  a:\n    members: [user:x]\n    revew: true\n", "roles.a.revew"),
    ],
)
def test_bad_roles_are_refused_with_file_line_and_field(
    tmp_path: Path, roles: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=None) as e:
        load(tmp_path, "roles:\n" + roles)
    assert message in str(e.value)
