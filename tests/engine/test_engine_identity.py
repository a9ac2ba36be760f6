"""Bindings: an address held by a person until its source ends it; the principal built from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from socialguard.engine import CompiledPolicy, Overrides, resolve_principal
from socialguard.engine.identity import Binding, Bindings, lifetime_seconds, policy_groups
from socialguard.engine.model import Grant
from socialguard.errors import PolicyError

MakePolicy = Callable[..., CompiledPolicy]

IDENTITY = """
identity:
  groups:
    Staff-WiFi: [staff]
    District-Admins: [admins]
  networks: [10.20.0.0/16]
  unidentified: {unidentified}
"""


def jdoe(address: str = "10.20.3.4", **kw: object) -> Binding:
    fields: dict[str, object] = {
        "source": "radius",
        "user": "jdoe",
        "groups": frozenset({"Staff-WiFi"}),
        "start": 100.0,
        "until": 200.0,
    }
    fields.update(kw)
    return Binding(address, **fields)  # type: ignore[arg-type]


def test_a_binding_is_found_by_address_until_it_ends() -> None:
    b = Bindings.EMPTY.with_people({"10.0.0.1": jdoe("10.0.0.1")})
    assert b.person("10.0.0.1", 150.0) == jdoe("10.0.0.1")
    assert b.person("10.0.0.1", 200.0) is None  # its lifetime is over
    assert b.person("10.0.0.2", 150.0) is None


def test_an_ended_binding_is_gone_and_the_old_snapshot_keeps_it() -> None:
    old = Bindings.EMPTY.with_people({"10.0.0.1": jdoe("10.0.0.1")})
    new = old.with_people({"10.0.0.1": None})
    assert new.person("10.0.0.1", 150.0) is None
    assert old.person("10.0.0.1", 150.0) is not None  # a snapshot never changes under a reader
    assert len(new) == 0


def test_many_changes_fold_into_a_new_base_with_the_same_answers() -> None:
    b = Bindings.EMPTY
    for i in range(2000):
        b = b.with_people({f"10.1.{i // 256}.{i % 256}": jdoe(f"10.1.{i // 256}.{i % 256}")})
    for i in range(0, 2000, 2):
        b = b.with_people({f"10.1.{i // 256}.{i % 256}": None})
    assert len(b) == 1000
    assert b.person("10.1.0.1", 150.0) is not None
    assert b.person("10.1.0.2", 150.0) is None
    assert len(b.people(150.0)) == 1000


def test_a_lease_gives_the_mac_until_it_expires() -> None:
    lease = Binding("10.0.0.9", "dhcp", mac="aa:bb:cc:dd:ee:09", until=300.0)
    b = Bindings.EMPTY.with_leases([lease])
    assert b.lease("10.0.0.9", 299.0) == lease
    assert b.lease("10.0.0.9", 300.0) is None
    assert b.person("10.0.0.9", 299.0) is None  # a lease names a device, not a person


def test_source_groups_count_only_through_the_rules_mapping() -> None:
    mapping = {"Staff-WiFi": ("staff",)}
    assert policy_groups(frozenset({"Staff-WiFi", "staff", "Guests"}), mapping) == {"staff"}


@pytest.mark.parametrize(
    ("text", "seconds"), [("12h", 43200.0), ("90m", 5400.0), ("1d", 86400.0), ("1h30m", 5400.0)]
)
def test_lifetimes(text: str, seconds: float) -> None:
    assert lifetime_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "12", "h", "1w"])
def test_bad_lifetimes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        lifetime_seconds(text)


def test_the_bound_person_is_the_principal_with_the_mapped_groups(make_policy: MakePolicy) -> None:
    policy = make_policy(IDENTITY.format(unidentified="staff"))
    p = resolve_principal(policy, "10.20.3.4", binding=jdoe())
    assert p.user == "jdoe"
    assert p.source == "radius"
    assert p.groups == {"staff", "all-staff"}
    assert "user:jdoe" in p.keys()  # noqa: SIM118 - Principal.keys() is not a mapping's


def test_a_person_gets_their_groups_not_the_networks(make_policy: MakePolicy) -> None:
    policy = make_policy(IDENTITY.format(unidentified="staff"))
    p = resolve_principal(policy, "10.20.3.4", binding=jdoe(groups=frozenset({"Students"})))
    assert p.groups == frozenset()  # a student on the staff Wi-Fi is not staff


def test_a_bound_users_policy_groups_count(make_policy: MakePolicy) -> None:
    policy = make_policy(IDENTITY.format(unidentified="staff"))
    p = resolve_principal(policy, "10.20.3.4", binding=jdoe(user="principal-jones"))
    assert "admins" in p.groups


@pytest.mark.parametrize(
    ("unidentified", "groups"), [("staff", {"staff", "all-staff"}), ("unknown", set())]
)
def test_the_policy_says_what_an_unidentified_device_on_a_staff_network_is(
    make_policy: MakePolicy, unidentified: str, groups: set[str]
) -> None:
    policy = make_policy(IDENTITY.format(unidentified=unidentified))
    p = resolve_principal(policy, "10.20.3.4")
    assert p.groups == groups
    assert p.source is None


def test_unknown_applies_only_on_the_networks_the_sources_cover(make_policy: MakePolicy) -> None:
    policy = make_policy(IDENTITY.format(unidentified="unknown"))
    assert resolve_principal(policy, "10.10.5.7").groups == {"admins", "all-staff"}


def test_sign_in_needs_a_sign_in_page(make_policy: MakePolicy) -> None:
    with pytest.raises(PolicyError, match="needs a sign_in: section"):
        make_policy(IDENTITY.format(unidentified="sign-in"))


def test_a_mapping_onto_an_unknown_group_is_a_located_error(make_policy: MakePolicy) -> None:
    with pytest.raises(PolicyError, match=r"policy.yaml:\d+.*unknown group 'staf'"):
        make_policy(IDENTITY.replace("[staff]", "[staf]").format(unidentified="staff"))


def test_a_missing_radius_secret_file_is_a_located_error(make_policy: MakePolicy) -> None:
    extra = "identity:\n  radius:\n    listen: 127.0.0.1:1813\n    secret_file: radius.secret\n"
    with pytest.raises(PolicyError, match=r"policy.yaml:\d+.*'radius.secret' not found"):
        make_policy(extra)


def test_a_bad_listen_address_is_a_located_error(make_policy: MakePolicy) -> None:
    extra = "identity:\n  radius:\n    listen: localhost\n    secret_file: s\n"
    with pytest.raises(PolicyError, match=r"policy.yaml:\d+.*HOST:PORT"):
        make_policy(extra, files={"s": "x"})


def test_an_addresss_overrides_do_not_apply_to_a_person_a_source_names(
    make_policy: MakePolicy,
) -> None:
    """Given to whoever held the address then: the next holder, named by RADIUS, gets none of it;
    the person's own grant follows them."""
    policy = make_policy(IDENTITY.format(unidentified="staff"))
    start = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    ends = start + timedelta(hours=1)
    by_address = Grant("g-ip", "ip:10.20.3.4", ("facebook.com",), start, ends, "kiosk", "admin")
    by_person = Grant("g-user", "user:jdoe", ("facebook.com",), start, ends, "page", "admin")
    overrides = Overrides.build([by_address], [])
    now = start + timedelta(minutes=1)
    unidentified = resolve_principal(policy, "10.20.3.4")
    named = resolve_principal(policy, "10.20.3.4", binding=jdoe())
    assert overrides.grant_for(unidentified, "facebook.com", {}, now) == by_address
    assert overrides.grant_for(named, "facebook.com", {}, now) is None
    assert "ip:10.20.3.4" not in named.keys()  # noqa: SIM118 - Principal.keys() is not a mapping's
    both = Overrides.build([by_address, by_person], [])
    assert both.grant_for(named, "facebook.com", {}, now) == by_person


def test_an_ipv6_prefix_binds_every_address_in_it_through_folds_and_ends() -> None:
    prefix = jdoe("2001:db8:1:2::/64")
    b = Bindings.EMPTY.with_people({prefix.address: prefix})
    assert b.person("2001:db8:1:2::9", 150.0) == prefix
    assert b.person("2001:db8:1:3::9", 150.0) is None
    for i in range(600):  # past the delta's limit: folded into a new base
        b = b.with_people({f"10.1.{i // 256}.{i % 256}": jdoe(f"10.1.{i // 256}.{i % 256}")})
    assert b.person("2001:db8:1:2::9", 150.0) == prefix
    ended = b.with_people({prefix.address: None})
    assert ended.person("2001:db8:1:2::9", 150.0) is None
    assert b.person("2001:db8:1:2::9", 250.0) is None  # its lifetime is over
