"""DHCP lease files (dnsmasq, ISC Kea memfile): MAC ↔ address until the lease expires."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from socialguard.engine.identity import Binding, Bindings
from socialguard.identity.dhcp import LeaseWatcher, parse_dnsmasq, parse_kea

DNSMASQ = """\
1800003600 aa:bb:cc:dd:ee:01 10.30.0.11 teacher-laptop 01:aa:bb:cc:dd:ee:01
0 aa:bb:cc:dd:ee:02 10.30.0.12 * *
duid 00:01:00:01:2c:7f:2e:1a:aa:bb:cc:dd:ee:ff
1800003600 1234567 2001:db8::5 phone 00:01:00:01
"""

KEA = """\
address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id
10.30.0.21,aa:bb:cc:dd:ee:21,,3600,1800003600,1,0,0,laptop-21,0,,0
10.30.0.22,aa:bb:cc:dd:ee:22,,3600,1800003600,1,0,0,laptop-22,0,,0
10.30.0.22,aa:bb:cc:dd:ee:22,,0,1800000000,1,0,0,laptop-22,0,,0
10.30.0.23,aa:bb:cc:dd:ee:23,,3600,1800003600,1,0,0,,1,,0
10.30.0.21,aa:bb:cc:dd:ee:99,,7200,1800007200,1,0,0,other,0,,0
"""


def test_dnsmasq_leases_bind_mac_to_address_until_expiry() -> None:
    leases = {b.address: b for b in parse_dnsmasq(DNSMASQ)}
    assert set(leases) == {"10.30.0.11", "10.30.0.12"}  # the IPv6 line has no MAC
    assert leases["10.30.0.11"] == Binding(
        "10.30.0.11", "dhcp", mac="aa:bb:cc:dd:ee:01", until=1800003600.0
    )
    assert leases["10.30.0.12"].until is None  # expiry 0: an infinite lease


def test_kea_the_last_row_for_an_address_wins_and_released_leases_are_gone() -> None:
    leases = {b.address: b for b in parse_kea(KEA)}
    assert set(leases) == {"10.30.0.21"}  # .22 released (lifetime 0), .23 declined (state 1)
    assert leases["10.30.0.21"].mac == "aa:bb:cc:dd:ee:99"
    assert leases["10.30.0.21"].until == 1800007200.0


def test_a_file_that_is_not_kea_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kea lease file"):
        parse_kea("ip,mac\n10.0.0.1,aa:bb:cc:dd:ee:ff\n")


def test_a_lease_ends_at_its_expiry() -> None:
    b = Bindings.EMPTY.with_leases(parse_dnsmasq(DNSMASQ))
    assert b.lease("10.30.0.11", 1800003599.0) is not None
    assert b.lease("10.30.0.11", 1800003600.0) is None


def test_the_watcher_rereads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.leases"
    path.write_text(DNSMASQ)
    got: list[list[Binding]] = []
    watcher = LeaseWatcher([(path, "dnsmasq")], got.append)
    assert watcher.check()
    assert {b.address for b in got[-1]} == {"10.30.0.11", "10.30.0.12"}
    assert not watcher.check()  # nothing changed: nothing published
    # dnsmasq writes a new file and renames it over the old one
    new = tmp_path / "dnsmasq.leases.new"
    new.write_text("1800003600 aa:bb:cc:dd:ee:03 10.30.0.13 x *\n")
    os.replace(new, path)
    assert watcher.check()
    assert [b.address for b in got[-1]] == ["10.30.0.13"]
    path.unlink()
    assert watcher.check()
    assert got[-1] == []  # a lease file removed: no leases


def test_an_unreadable_file_is_counted_and_the_others_kept(tmp_path: Path) -> None:
    good = tmp_path / "a.leases"
    good.write_text(DNSMASQ)
    bad = tmp_path / "kea.csv"
    bad.write_text("not,a,kea,file\n")
    got: list[list[Binding]] = []
    watcher = LeaseWatcher([(good, "dnsmasq"), (bad, "kea")], got.append)
    watcher.check()
    assert watcher.failures == 1
    assert {b.address for b in got[-1]} == {"10.30.0.11", "10.30.0.12"}
