"""Identity through the real proxy: a RADIUS Accounting-Start makes the person the principal of
the very next request (on the same keep-alive connection), and the Stop takes them away again."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SCHOOL_HOURS, TEST_RULES  # type: ignore[import-not-found]
from socialguard.identity import IdentityService
from socialguard.proxy.clock import epoch_seconds

pytestmark = pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient")

SECRET = "s3cret-for-tests"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def identity_rules(tmp_path: Path, port: int, unidentified: str = "unknown") -> str:
    secret = tmp_path / "radius.secret"
    secret.write_text(SECRET + "\n")
    identity = f"""\
identity:
  radius:
    listen: 127.0.0.1:{port}
    secret_file: {secret}
  groups:
    staff: [staff]
  networks: [127.0.0.0/8]
  unidentified: {unidentified}
"""
    return TEST_RULES.split("tests:")[0] + identity


def radclient(port: int, attrs: str, secret: str = SECRET) -> int:
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "2", "-q", f"127.0.0.1:{port}", "acct", secret],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return done.returncode


JDOE = (
    'User-Name = "jdoe", Acct-Status-Type = {status}, Framed-IP-Address = 127.0.0.1, '
    'Class = "staff", Acct-Session-Id = "sess-1"'
)


def ask(conn: http.client.HTTPConnection) -> int:
    """One request for Facebook on the kept-alive connection to the proxy."""
    conn.request("GET", "http://www.facebook.com/", headers={"Host": "www.facebook.com"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def last_request_record(proxy: Any) -> dict[str, Any]:
    found = [r for r in proxy.records() if r.get("host") == "www.facebook.com"]
    assert found, "no decision record for the request"
    return found[-1]


def test_a_radius_start_makes_the_person_the_principal_until_stop(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_udp_port()
    proxy = start_proxy(identity_rules(tmp_path, port))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15)
    try:
        # unidentified on the staff network, and the policy says that is unknown: not staff
        assert ask(conn) == 200
        before = last_request_record(proxy)
        assert (before["user"], before["groups"], before["action"]) == (None, [], "allow")
        assert "identified_by" not in before

        assert radclient(port, JDOE.format(status="Start")) == 0
        assert ask(conn) == 403  # the next request, on the same connection
        during = last_request_record(proxy)
        assert during["user"] == "jdoe"
        assert during["identified_by"] == "radius"
        assert during["groups"] == ["staff"]
        assert during["action"] == "block"

        assert radclient(port, JDOE.format(status="Stop")) == 0
        assert ask(conn) == 200
        after = last_request_record(proxy)
        assert (after["user"], after["groups"]) == (None, [])
        assert "identified_by" not in after
    finally:
        conn.close()


def test_a_packet_with_the_wrong_secret_binds_no_one(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_udp_port()
    proxy = start_proxy(identity_rules(tmp_path, port), socialguard_admin="127.0.0.1:0")
    assert radclient(port, JDOE.format(status="Start"), secret="guessed") != 0
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15)
    try:
        assert ask(conn) == 200
        assert last_request_record(proxy)["user"] is None
    finally:
        conn.close()
    assert proxy.addon.identity.counters()["refused"] == {"bad_secret": 1}
    host, admin_port = proxy.addon._admin.address[:2]
    metrics = httpx.get(f"http://{host}:{admin_port}/metrics", timeout=10).text
    assert 'socialguard_radius_packets_total{result="bad_secret"} 1.0' in metrics
    assert 'socialguard_radius_packets_total{result="accepted"} 0.0' in metrics
    assert "socialguard_identity_bindings 0.0" in metrics


def test_a_restarted_identity_service_keeps_the_people_bound_until_their_stop(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_udp_port()
    proxy = start_proxy(identity_rules(tmp_path, port))
    assert radclient(port, JDOE.format(status="Start")) == 0
    spec = proxy.addon.policy.identity.spec
    other = free_udp_port()
    radius = spec.radius.model_copy(update={"listen": f"127.0.0.1:{other}"})
    restarted = IdentityService(clock=epoch_seconds(proxy.clock))
    restarted.configure(
        spec.model_copy(update={"radius": radius}), proxy.rules.parent, proxy.rules.parent / "state"
    )
    try:
        person = restarted.person("127.0.0.1")
        assert person is not None
        assert (person.user, person.source) == ("jdoe", "radius")
        # and the restored session's Stop still ends it
        assert radclient(other, JDOE.format(status="Stop")) == 0
        assert restarted.person("127.0.0.1") is None
    finally:
        restarted.stop()


def test_who_shows_what_the_running_proxy_was_told(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_udp_port()
    # `who` reads the store at the wall clock's now: so does this proxy
    proxy = start_proxy(identity_rules(tmp_path, port), at=datetime.now(UTC))
    assert radclient(port, JDOE.format(status="Start")) == 0
    cmd = [
        sys.executable, "-m", "socialguard", "who", "127.0.0.1", "--json",
        "--rules", str(proxy.rules), "--state", str(proxy.rules.parent / "state"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["user"], out["source"], out["groups"]) == ("jdoe", "radius", ["staff"])
    assert radclient(port, JDOE.format(status="Stop")) == 0
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert json.loads(done.stdout)["user"] is None


def test_a_dhcp_lease_gives_the_device_inventory_its_mac_until_it_expires(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    """The inventory knows laptop-17 by MAC only; the lease file says 127.0.0.1 has that MAC."""
    devices = tmp_path / "devices.csv"
    devices.write_text("device,mac,ip,owner\nlaptop-17,AA-BB-CC-DD-EE-01,,ms-smith\n")
    leases = tmp_path / "dnsmasq.leases"
    expiry = int(SCHOOL_HOURS.timestamp()) + 3600  # an hour after the proxy's clock
    leases.write_text(f"{expiry} aa:bb:cc:dd:ee:01 127.0.0.1 laptop-17 *\n")
    rules = (
        TEST_RULES.split("tests:")[0].replace(
            'networks: [127.0.0.0/8, "::1/128"]', f"devices: {devices}"
        )
        + f"identity:\n  dhcp:\n    - {{leases: {leases}, format: dnsmasq}}\n"
    )
    proxy = start_proxy(rules)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15)
    try:
        assert ask(conn) == 403  # staff by its device, during school hours
        rec = last_request_record(proxy)
        assert (rec["device"], rec["user"], rec["groups"]) == ("laptop-17", "ms-smith", ["staff"])
        # the lease expires, by the proxy's clock: the address is no one's device now
        proxy.clock.advance(timedelta(minutes=59))
        assert ask(conn) == 403
        proxy.clock.advance(timedelta(minutes=1))
        assert ask(conn) == 200  # the next request, on the same connection
        rec = last_request_record(proxy)
        assert (rec["device"], rec["groups"]) == (None, [])
    finally:
        conn.close()


def test_a_binding_ends_at_its_lifetime_on_the_proxys_clock(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    """A controller that died sends no Stop: the binding ends when its lifetime (here the
    session's Session-Timeout, 10 minutes) is over, by the clock the proxy decides with."""
    port = free_udp_port()
    proxy = start_proxy(identity_rules(tmp_path, port))
    assert radclient(port, JDOE.format(status="Start") + ", Session-Timeout = 600") == 0
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15)
    try:
        proxy.clock.advance(timedelta(minutes=9))
        assert ask(conn) == 403
        assert last_request_record(proxy)["user"] == "jdoe"
        proxy.clock.advance(timedelta(minutes=1))
        assert ask(conn) == 200  # the next request, on the same connection
        rec = last_request_record(proxy)
        assert (rec["user"], rec["groups"]) == (None, [])
        assert "identified_by" not in rec
    finally:
        conn.close()


def test_the_block_page_says_who_the_person_was_identified_as_and_by_which_source(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_udp_port()
    proxy = start_proxy(identity_rules(tmp_path, port))
    assert radclient(port, JDOE.format(status="Start")) == 0
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15)
    try:
        conn.request(
            "GET", "http://www.facebook.com/", headers={"Host": "www.facebook.com",
                                                        "Accept": "text/html"},
        )  # fmt: skip
        resp = conn.getresponse()
        page = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 403
    assert (
        "<dd>jdoe, identified by RADIUS accounting (the Wi-Fi sign-in); address 127.0.0.1 (staff)"
        "</dd>" in page
    )
    assert last_request_record(proxy)["identified_by"] == "radius"


def test_metrics_count_the_people_bound_and_their_addresses_in_force(
    start_proxy: Callable[..., Any], tmp_path: Path
) -> None:
    """A dual-stack phone is one person on two addresses; a binding whose lifetime is over (a
    controller that died, no Stop) is no longer counted."""
    port = free_udp_port()
    proxy = start_proxy(identity_rules(tmp_path, port), socialguard_admin="127.0.0.1:0")
    dual = JDOE.format(status="Start") + ", Framed-IPv6-Address = ::1, Session-Timeout = 600"
    assert radclient(port, dual) == 0
    host, admin_port = proxy.addon._admin.address[:2]

    def scrape() -> str:
        return httpx.get(f"http://{host}:{admin_port}/metrics", timeout=10).text

    metrics = scrape()
    assert "socialguard_identity_bindings 2.0" in metrics
    assert "socialguard_identity_people 1.0" in metrics
    proxy.clock.advance(timedelta(minutes=10))
    metrics = scrape()
    assert "socialguard_identity_bindings 0.0" in metrics
    assert "socialguard_identity_people 0.0" in metrics
