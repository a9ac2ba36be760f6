"""RADIUS accounting with real packets from FreeRADIUS's radclient: bind, end, refuse."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from socialguard.engine.identity import Binding, Bindings
from socialguard.identity.radius import (
    Accounting,
    RadiusError,
    RadiusListener,
    parse_accounting_request,
)

pytestmark = pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient")

SECRET = b"testing123"
NOW = 1_800_000_000.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collected:
    """What the listener published, applied to a snapshot as the proxy would."""

    def __init__(self) -> None:
        self.bindings = Bindings.EMPTY
        self.bursts = 0

    def __call__(self, changes: dict[str, Binding | None], sessions: object) -> None:
        self.bindings = self.bindings.with_people(changes)
        self.bursts += 1


@pytest.fixture
def listener() -> Iterator[tuple[RadiusListener, Collected]]:
    got = Collected()
    li = RadiusListener(
        "127.0.0.1",
        free_udp_port(),
        SECRET,
        Accounting(lifetime_s=3600.0),
        got,
        lambda: NOW,
    ).start()
    yield li, got
    li.stop()


def radclient(li: RadiusListener, attrs: str, secret: str = "testing123") -> int:
    """Send one Accounting-Request with radclient; its exit code is 0 when answered."""
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "1", "-q", f"127.0.0.1:{li.port}", "acct", secret],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return done.returncode


START = (
    'User-Name = "jdoe", Acct-Status-Type = {status}, Framed-IP-Address = 10.20.3.4, '
    'Class = "Staff-WiFi", Calling-Station-Id = "AA-BB-CC-DD-EE-FF", Acct-Session-Id = "{sid}", '
    'NAS-Identifier = "wlc-1"'
)


def test_a_start_binds_the_address_to_the_user_and_is_answered(
    listener: tuple[RadiusListener, Collected],
) -> None:
    li, got = listener
    assert radclient(li, START.format(status="Start", sid="s1")) == 0
    b = got.bindings.person("10.20.3.4", NOW)
    assert b is not None
    assert (b.user, b.source, b.groups, b.mac) == (
        "jdoe",
        "radius",
        frozenset({"Staff-WiFi"}),
        "aa:bb:cc:dd:ee:ff",
    )
    assert b.until == NOW + 3600.0
    assert li.counters.accepted == 1


def test_a_stop_ends_the_binding(listener: tuple[RadiusListener, Collected]) -> None:
    li, got = listener
    assert radclient(li, START.format(status="Start", sid="s1")) == 0
    assert radclient(li, START.format(status="Interim-Update", sid="s1")) == 0
    assert got.bindings.person("10.20.3.4", NOW) is not None
    assert radclient(li, START.format(status="Stop", sid="s1")) == 0
    assert got.bindings.person("10.20.3.4", NOW) is None


def test_a_late_stop_of_an_earlier_session_leaves_the_new_holder_bound(
    listener: tuple[RadiusListener, Collected],
) -> None:
    li, got = listener
    assert radclient(li, START.format(status="Start", sid="old")) == 0
    new = START.replace('"jdoe"', '"asmith"').format(status="Start", sid="new")
    assert radclient(li, new) == 0
    assert radclient(li, START.format(status="Stop", sid="old")) == 0
    b = got.bindings.person("10.20.3.4", NOW)
    assert b is not None
    assert b.user == "asmith"


def test_accounting_on_ends_what_that_controller_bound(
    listener: tuple[RadiusListener, Collected],
) -> None:
    li, got = listener
    assert radclient(li, START.format(status="Start", sid="s1")) == 0
    assert radclient(li, 'Acct-Status-Type = Accounting-On, NAS-Identifier = "wlc-1"') == 0
    assert got.bindings.person("10.20.3.4", NOW) is None


def test_a_wrong_secret_is_refused_unanswered_and_counted(
    listener: tuple[RadiusListener, Collected],
) -> None:
    li, got = listener
    assert radclient(li, START.format(status="Start", sid="s1"), secret="guessed") != 0
    assert got.bindings.person("10.20.3.4", NOW) is None
    assert li.counters.refused == {"bad_secret": 1}
    assert li.counters.accepted == 0


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x04\x01\x00", "malformed"),  # shorter than a header
        (b"\x04\x01\x00\xff" + bytes(16), "malformed"),  # length beyond the datagram
        (b"\x01\x01\x00\x14" + bytes(16), "not_accounting"),  # an Access-Request
    ],
)
def test_malformed_packets_are_refused_and_counted(
    listener: tuple[RadiusListener, Collected], packet: bytes, reason: str
) -> None:
    li, got = listener
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(packet, ("127.0.0.1", li.port))
    # then a good packet: once it is answered, the bad one before it was handled too
    assert radclient(li, START.format(status="Start", sid="s1")) == 0
    assert li.counters.refused == {reason: 1}
    assert got.bindings.person("10.20.3.4", NOW) is not None


def test_an_attribute_overrunning_the_packet_is_malformed() -> None:
    import hashlib

    body = b"\x28\x06\x00\x00\x00\x01" + b"\x01\x09jd"  # User-Name claims 9 octets, has 4
    header = b"\x04\x07" + (20 + len(body)).to_bytes(2, "big")
    auth = hashlib.md5(header + bytes(16) + body + SECRET).digest()
    with pytest.raises(RadiusError, match="bad length"):
        parse_accounting_request(header + auth + body, SECRET)


def test_a_port_in_use_is_an_error_at_start() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        li = RadiusListener(
            "127.0.0.1", port, SECRET, Accounting(lifetime_s=60), Collected(), lambda: NOW
        )
        with pytest.raises(OSError):
            li.start()


V6 = (
    'User-Name = "jdoe", Acct-Status-Type = {status}, Framed-IPv6-Address = 2001:db8::5, '
    'Framed-IPv6-Prefix = 2001:db8:1:2::/64, Framed-IP-Address = 10.20.3.4, Class = "Staff-WiFi", '
    'Acct-Session-Id = "{sid}", NAS-Identifier = "wlc-1"'
)


def test_ipv6_addresses_and_prefixes_are_bound_like_an_ipv4_address_until_stop(
    listener: tuple[RadiusListener, Collected],
) -> None:
    """RFC 6911 Framed-IPv6-Address and RFC 3162 Framed-IPv6-Prefix (a dual-stack phone: an
    IPv4 address, a DHCPv6 address, and the /64 its SLAAC addresses come from)."""
    li, got = listener
    assert radclient(li, V6.format(status="Start", sid="s6")) == 0
    for address in ("10.20.3.4", "2001:db8::5", "2001:db8:1:2::1", "2001:db8:1:2:a:b:c:d"):
        b = got.bindings.person(address, NOW)
        assert b is not None, address
        assert (b.user, b.source) == ("jdoe", "radius")
    assert got.bindings.person("2001:db8::6", NOW) is None
    assert got.bindings.person("2001:db8:1:3::1", NOW) is None  # outside the prefix
    assert radclient(li, V6.format(status="Stop", sid="s6")) == 0
    for address in ("10.20.3.4", "2001:db8::5", "2001:db8:1:2::1"):
        assert got.bindings.person(address, NOW) is None, address


def test_a_late_stop_leaves_the_prefixs_new_holder_bound(
    listener: tuple[RadiusListener, Collected],
) -> None:
    li, got = listener
    assert radclient(li, V6.format(status="Start", sid="old")) == 0
    new = V6.replace('"jdoe"', '"asmith"').format(status="Start", sid="new")
    assert radclient(li, new) == 0
    assert radclient(li, V6.format(status="Stop", sid="old")) == 0
    b = got.bindings.person("2001:db8:1:2::77", NOW)
    assert b is not None
    assert b.user == "asmith"


def test_a_stop_ends_every_address_its_session_bound_also_those_it_does_not_list(
    listener: tuple[RadiusListener, Collected],
) -> None:
    """An Interim-Update brought a new DHCPv6 address; the Stop lists only the IPv4 one."""
    li, got = listener
    assert radclient(li, V6.format(status="Start", sid="s6")) == 0
    moved = V6.replace("2001:db8::5", "2001:db8::6").format(status="Interim-Update", sid="s6")
    assert radclient(li, moved) == 0
    assert got.bindings.person("2001:db8::6", NOW) is not None
    assert radclient(li, START.format(status="Stop", sid="s6")) == 0
    for address in ("10.20.3.4", "2001:db8::5", "2001:db8::6", "2001:db8:1:2::1"):
        assert got.bindings.person(address, NOW) is None, address
