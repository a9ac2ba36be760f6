"""The neighbour table: parsed from the kernel's formats, refreshed without blocking lookups."""

from __future__ import annotations

import pytest

from socialguard.proxy.neighbours import NeighbourTable, parse_ip_neigh, parse_proc_net_arp

PROC_ARP = """IP address       HW type     Flags       HW address            Mask     Device
10.20.1.5        0x1         0x2         AA:BB:CC:DD:EE:01     *        eth1
10.20.1.6        0x1         0x0         00:00:00:00:00:00     *        eth1
10.20.1.7        0x1         0x2         aa:bb:cc:dd:ee:07     *        eth1
garbage
"""

IP_NEIGH = """10.20.1.5 dev eth1 lladdr aa:bb:cc:dd:ee:01 REACHABLE
2001:db8:20::5 dev eth1 lladdr aa:bb:cc:dd:ee:02 STALE
10.20.1.9 dev eth1 FAILED
fe80::1 dev eth1 lladdr 02:00:00:00:00:01 router DELAY
"""


def test_proc_net_arp_keeps_complete_entries_lowercased() -> None:
    assert parse_proc_net_arp(PROC_ARP) == {
        "10.20.1.5": "aa:bb:cc:dd:ee:01",
        "10.20.1.7": "aa:bb:cc:dd:ee:07",
    }


def test_ip_neigh_covers_ipv6_and_skips_failed() -> None:
    table = parse_ip_neigh(IP_NEIGH)
    assert table["2001:db8:20::5"] == "aa:bb:cc:dd:ee:02"
    assert table["fe80::1"] == "02:00:00:00:00:01"
    assert "10.20.1.9" not in table


def test_table_serves_the_last_good_read() -> None:
    reads = [{"10.0.0.1": "aa:aa:aa:aa:aa:aa"}]

    def reader() -> dict[str, str]:
        if not reads:
            raise OSError("ip: not found")
        return reads.pop()

    table = NeighbourTable(reader=reader)
    table.refresh()
    assert table.lookup("10.0.0.1") == "aa:aa:aa:aa:aa:aa"
    table.refresh()  # the reader fails now: the old table stays
    assert table.lookup("10.0.0.1") == "aa:aa:aa:aa:aa:aa"
    assert table.lookup("10.0.0.2") is None


@pytest.mark.parametrize("interval", [0.01])
def test_background_refresh_starts_and_stops(interval: float) -> None:
    table = NeighbourTable(interval_s=interval, reader=lambda: {"::1": "02:00:00:00:00:09"})
    table.start()
    try:
        assert table.lookup("::1") == "02:00:00:00:00:09"
    finally:
        table.stop()
