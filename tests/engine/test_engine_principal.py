"""resolve_principal: networks, nested groups, device inventory and users decide who is asking."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from socialguard.engine import CompiledPolicy, resolve_principal

MakePolicy = Callable[..., CompiledPolicy]

INVENTORY = """\
device,mac,ip,owner
laptop-17,AA-BB-CC-DD-EE-01,10.99.0.17,ms-smith
kiosk-2,,10.99.0.2,
"""


EXTRA_GROUPS = """
  teachers-devices:
    devices: devices.csv
  smiths:
    users: [ms-smith]
"""


@pytest.fixture
def policy(make_policy: MakePolicy, engine_base: str) -> CompiledPolicy:
    base = engine_base.replace("categories:", EXTRA_GROUPS.lstrip("\n") + "categories:")
    return make_policy("", base=base, files={"devices.csv": INVENTORY})


def test_a_network_places_a_client_in_its_group_and_the_groups_including_it(
    policy: CompiledPolicy,
) -> None:
    p = resolve_principal(policy, "10.20.3.4")
    assert p.groups == {"staff", "all-staff"}
    assert p.client_ip == "10.20.3.4"


def test_ipv4_mapped_addresses_are_their_ipv4(policy: CompiledPolicy) -> None:
    assert resolve_principal(policy, "::ffff:10.20.3.4").client_ip == "10.20.3.4"
    assert resolve_principal(policy, "::ffff:10.20.3.4").groups == {"staff", "all-staff"}


def test_an_unknown_address_is_in_no_group(policy: CompiledPolicy) -> None:
    assert resolve_principal(policy, "192.0.2.1").groups == frozenset()


def test_a_proxy_user_brings_their_groups(policy: CompiledPolicy) -> None:
    p = resolve_principal(policy, "192.0.2.1", user="principal-jones")
    assert p.groups == {"admins", "all-staff"}
    assert p.user == "principal-jones"


def test_the_inventory_names_the_device_by_mac_then_ip(policy: CompiledPolicy) -> None:
    by_mac = resolve_principal(policy, "192.0.2.50", mac="aa:bb:cc:dd:ee:01")
    assert (by_mac.device, by_mac.user, by_mac.mac) == (
        "laptop-17",
        "ms-smith",
        "aa:bb:cc:dd:ee:01",
    )
    assert "teachers-devices" in by_mac.groups and "smiths" in by_mac.groups
    by_ip = resolve_principal(policy, "10.99.0.2")
    assert (by_ip.device, by_ip.user) == ("kiosk-2", None)
    assert len(policy.devices) == 2


def test_a_bad_address_is_refused(policy: CompiledPolicy) -> None:
    with pytest.raises(ValueError):
        resolve_principal(policy, "10.20.1.999")
    with pytest.raises(ValueError, match="MAC"):
        resolve_principal(policy, "10.20.1.9", mac="zz:zz")
