"""engine/roles.py: may this administrator do this? A table of acts against roles."""

from __future__ import annotations

from datetime import timedelta

import pytest

from socialguard.engine.roles import Admin, AdminAct, Role, Roles, authorize, check_member

SCHOOL_A = Role(
    "school-a",
    frozenset({"user:alice"}),
    groups=frozenset({"school-a"}),
    grant_max=timedelta(hours=2),
)
COMMS = Role(
    "comms",
    frozenset({"os-group:comms"}),
    services=frozenset({"facebook"}),
    emergencies="services",
    requests=False,
)
DISTRICT = Role("district", frozenset({"user:supt"}), emergencies="all", review=True)
ROLES = Roles((SCHOOL_A, COMMS, DISTRICT))
ALICE = Admin("alice", frozenset({"alice"}))
COMMS_OFFICER = Admin("carol", frozenset({"carol", "comms"}))
SUPT = Admin("supt")
FB = ("facebook",)


def act(action: str, target: str = "group:school-a", **kw: object) -> AdminAct:
    groups = kw.pop("groups") if "groups" in kw else frozenset({target.partition(":")[2]})
    return AdminAct(action, target, groups=groups, services=kw.pop("services", FB), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("admin", "the_act", "allowed", "says"),
    [
        (ALICE, act("grant_add", length=timedelta(hours=1)), True, ""),
        (ALICE, act("grant_add", "group:school-b"), False, "not in its groups (school-a)"),
        (ALICE, act("grant_add", length=timedelta(hours=3)), False, "grants at most 2h"),
        (ALICE, act("grant_add", "user:x", groups=None), False, "does not place user:x"),
        (ALICE, act("grant_add", "all", groups=None, scope_all=True), False, "whole district"),
        (ALICE, act("request_approve", length=timedelta(hours=1)), True, ""),
        (COMMS_OFFICER, act("request_deny"), False, "may not answer access requests"),
        (COMMS_OFFICER, act("grant_add", services=("tiktok",)), False, "tiktok is not among"),
        (COMMS_OFFICER, act("grant_add", services=(None,)), False, "a site in no service"),
        (COMMS_OFFICER, act("emergency_start", "all", scope_all=True), True, ""),
        (COMMS_OFFICER, act("emergency_start", every_site=True), False, "on its services only"),
        (ALICE, act("emergency_start"), False, "may not declare or stop emergencies"),
        (ALICE, act("emergency_review"), False, "may not review"),
        (SUPT, act("emergency_ack"), True, ""),
        (SUPT, act("emergency_start", "all", scope_all=True, every_site=True), True, ""),
        (Admin("mallory"), act("grant_add"), False, "mallory is named by no role"),
    ],
)
def test_authorize(admin: Admin, the_act: AdminAct, allowed: bool, says: str) -> None:
    p = authorize(ROLES, admin, the_act)
    assert p.allowed is allowed
    assert says in p.reason


def test_any_role_that_allows_is_enough() -> None:
    both = Admin("alice", frozenset({"comms"}))
    p = authorize(ROLES, both, act("emergency_start", services=FB))
    assert (p.allowed, p.role) == (True, "comms")


def test_no_roles_allow_everything() -> None:
    assert authorize(Roles(), Admin("anyone"), act("grant_add", "group:x")).allowed


def test_groups_role_may_declare_only_for_a_group() -> None:
    role = Role("g", frozenset({"user:g"}), groups=frozenset({"school-a"}), emergencies="groups")
    roles = Roles((role,))
    assert authorize(roles, Admin("g"), act("emergency_start", every_site=True)).allowed
    refused = authorize(roles, Admin("g"), act("emergency_start", "all", scope_all=True))
    assert "for its groups only" in refused.reason


@pytest.mark.parametrize(
    ("text", "member"),
    [("user:alice", "user:alice"), (" OS-Group:sg-admins ", "os-group:sg-admins")],
)
def test_members(text: str, member: str) -> None:
    assert check_member(text) == member


@pytest.mark.parametrize("text", ["alice", "group:x", "user:", "user:a b"])
def test_bad_members(text: str) -> None:
    with pytest.raises(ValueError, match="should be user:NAME or os-group:NAME"):
        check_member(text)
