"""Issue 21: an address is not a person. When RADIUS accounting says alice holds an address, her
grant and her emergency are hers: after her Accounting-Stop and bob's Accounting-Start on the same
address, bob meets the block page and the origin receives nothing from him.

Real packets (FreeRADIUS's radclient, shared secret checked) to the running proxy's RADIUS
listener; real curl through the real proxy; the real `socialguard grant` command on the proxy's
state. Each case asserts on what reached the recording origin and on what the decision log says
about who each client was and which source said so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import curl  # type: ignore[import-not-found]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient"),
]

SECRET = "s3cret-for-tests"
HTML = ("-H", "Accept: text/html")
PAGE = "www.facebook.com"
PICKUP_WAIT_S = 20.0  # bounded; the pickup time itself is a figure in bench/bench_overrides.py

RULES = """\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
default: allow
identity:
  radius:
    listen: 127.0.0.1:{port}
    secret_file: {secret}
  groups:
    Staff-WiFi: [staff]
  networks: [127.0.0.0/8]
  unidentified: staff
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(start_proxy: Any, tmp_path: Path) -> tuple[Any, int]:
    port = free_udp_port()
    secret = tmp_path / "radius.secret"
    secret.write_text(SECRET + "\n")
    # the store's grants start at the wall clock: the proxy's clock is a minute later
    proxy = start_proxy(
        rules_text=RULES.format(port=port, secret=secret),
        at=datetime.now(UTC) + timedelta(minutes=1),
    )
    return proxy, port


def accounting(port: int, status: str, user: str, session: str, address: str = "127.0.0.1") -> None:
    """One Accounting-Request from the Wi-Fi controller, answered (in force) or the test fails."""
    attrs = (
        f'User-Name = "{user}", Acct-Status-Type = {status}, Framed-IP-Address = {address}, '
        f'Class = "Staff-WiFi", Acct-Session-Id = "{session}", NAS-Identifier = "wlc-1"'
    )
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "2", "-q", f"127.0.0.1:{port}", "acct", SECRET],
        input=attrs, capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"radclient {status} {user}: {done.stderr}"


def sg(proxy: Any, *args: str) -> str:
    """The real `socialguard` command on the running proxy's state and rules; its stdout."""
    env = {
        **os.environ,
        "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
        "SOCIALGUARD_RULES": str(proxy.rules),
        "SUDO_USER": "",
    }
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


def status(proxy: Any, path: str, address: str = "127.0.0.1") -> int:
    return curl(proxy, f"https://{PAGE}{path}", *HTML, "--interface", address).status


def wait_until_open(proxy: Any, path: str) -> None:
    """Ask until the proxy lets the page through (bounded): the store's change reached it."""
    deadline = time.monotonic() + PICKUP_WAIT_S
    while status(proxy, path) != 200:
        assert time.monotonic() < deadline, f"{PAGE} still closed after {PICKUP_WAIT_S} s"
        time.sleep(0.1)


def targets(origin: Any) -> list[bytes]:
    """The request target of every request the origin received."""
    return [head.split(b" ", 2)[1] for c in origin.connections for head in c.requests]


def request_records(proxy: Any) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("stage") == "request" and r.get("host") == PAGE]


def declare_emergency(proxy: Any) -> None:
    """Open the block page and post its emergency form, as the blocked person would."""
    page = curl(proxy, f"https://{PAGE}/blocked", *HTML)
    assert page.status == 403
    token = re.search(
        r'action="/\.socialguard/emergency".*?name="token" value="([^"]+)"', page.body, re.S
    )
    assert token, "the block page offers the emergency form"
    answer = curl(
        proxy,
        f"https://{PAGE}/.socialguard/emergency",
        "--data-urlencode", f"token={token.group(1)}",
        "--data-urlencode", "reason=Lockdown: reaching families",
    )  # fmt: skip
    assert answer.status == 200, answer.body


def test_a_grant_to_the_person_does_not_pass_to_the_next_holder_of_the_address(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    proxy, port = start(start_proxy, tmp_path)
    accounting(port, "Start", "alice", "sess-a")
    assert status(proxy, "/alice-before") == 403
    out = sg(proxy, "grant", "add", "--who", "user:alice", "--site", PAGE, "--for", "1h",
             "--reason", "Yearbook page", "--json")  # fmt: skip
    assert '"user:alice"' in out
    wait_until_open(proxy, "/alice-poll")
    assert status(proxy, "/alice-page") == 200

    accounting(port, "Stop", "alice", "sess-a")
    accounting(port, "Start", "bob", "sess-b")
    assert status(proxy, "/bob-page") == 403

    seen = targets(origin)
    assert b"/alice-page" in seen
    assert b"/bob-page" not in seen and not origin.saw(b"/bob-page")
    records = {r["decision_id"]: r for r in request_records(proxy)}
    alice = [r for r in records.values() if r["user"] == "alice" and r["action"] == "allow"]
    bob = [r for r in records.values() if r["user"] == "bob"]
    assert alice and alice[-1]["basis"] == "grant" and alice[-1]["identified_by"] == "radius"
    assert [(r["action"], r["basis"], r["identified_by"]) for r in bob] == [
        ("block", "rule", "radius")
    ]


def test_a_self_declared_emergency_leaves_with_the_person(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    proxy, port = start(start_proxy, tmp_path)
    accounting(port, "Start", "alice", "sess-a")
    declare_emergency(proxy)
    wait_until_open(proxy, "/alice-poll")
    assert status(proxy, "/alice-page") == 200
    emergency = [r for r in request_records(proxy) if r["basis"] == "emergency"][-1]
    assert (emergency["user"], emergency["identified_by"]) == ("alice", "radius")

    accounting(port, "Stop", "alice", "sess-a")
    # no one holds the address: an unidentified staff address, and the emergency was alice's
    assert status(proxy, "/nobody-page") == 403
    accounting(port, "Start", "bob", "sess-b")
    assert status(proxy, "/bob-page") == 403

    seen = targets(origin)
    assert b"/alice-page" in seen
    assert b"/nobody-page" not in seen and b"/bob-page" not in seen
    assert not origin.saw(b"/bob-page")
    last = request_records(proxy)[-2:]
    assert [(r["user"], r.get("identified_by"), r["action"]) for r in last] == [
        (None, None, "block"),
        ("bob", "radius", "block"),
    ]


def test_an_address_grant_does_not_open_the_site_for_a_person_bound_to_that_address(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    """A grant to ip:ADDR was given to whoever held it then; a person a source names now is
    known by name, and only their own grants apply."""
    proxy, port = start(start_proxy, tmp_path)
    sg(proxy, "grant", "add", "--who", "ip:127.0.0.1", "--site", PAGE, "--for", "1h",
       "--reason", "Kiosk", "--json")  # fmt: skip
    wait_until_open(proxy, "/kiosk-poll")  # unidentified: the address's grant applies
    accounting(port, "Start", "bob", "sess-b")
    assert status(proxy, "/bob-page") == 403
    assert b"/bob-page" not in targets(origin)
    last = request_records(proxy)[-1]
    assert (last["user"], last["identified_by"], last["action"]) == ("bob", "radius", "block")


def open_page(proxy: Any, address: str) -> str:
    """The block page from `address`: the token of its emergency form."""
    page = curl(proxy, f"https://{PAGE}/blocked", *HTML, "--interface", address)
    assert page.status == 403, address
    token = re.search(
        r'action="/\.socialguard/emergency".*?name="token" value="([^"]+)"', page.body, re.S
    )
    assert token, f"the block page offered {address} the emergency form"
    return token.group(1)


def test_one_person_on_ten_addresses_has_one_daily_emergency_allowance(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    """Ten addresses, all alice's (RADIUS says so): the daily allowance is hers, not theirs.
    Every page is opened first, then every form posted: the store, not the page, must refuse."""
    proxy, port = start(start_proxy, tmp_path)
    addresses = [f"127.0.0.{n}" for n in range(2, 12)]
    for n, address in enumerate(addresses):
        accounting(port, "Start", "alice", f"sess-{n}", address)
    tokens = [open_page(proxy, a) for a in addresses]
    statuses = [
        curl(
            proxy,
            f"https://{PAGE}/.socialguard/emergency",
            "--data-urlencode", f"token={token}",
            "--data-urlencode", "reason=Lockdown: reaching families",
            "--interface", address,
        ).status
        for token, address in zip(tokens, addresses, strict=True)
    ]  # fmt: skip
    assert statuses == [200] * 2 + [429] * 8  # emergency_per_day: 2 by default
    forms = [r for r in proxy.records() if r.get("type") == "form"]
    assert [(r["outcome"], r["user"], r["identified_by"]) for r in forms] == [
        ("emergency_declared", "alice", "radius")
    ] * 2 + [("limit_reached", "alice", "radius")] * 8
    assert {r["limit"] for r in forms if r["outcome"] == "limit_reached"} == {"emergency_per_day"}
    # the auditor finds them by the person, not by ten addresses
    found = sg(proxy, "audit", "search", "--who", "user:alice", "--basis", "form", "--json",
               "--log-dir", str(proxy.log_dir))  # fmt: skip
    rows = [json.loads(line) for line in found.splitlines() if line.strip()]
    assert len(rows) == 10
    # and nothing of the forms' own posts reached the origin
    assert not origin.saw(b"/.socialguard/")


def test_an_access_request_names_the_person_and_its_grant_leaves_with_them(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    """The administrator sees who asked (user:alice, not ip:127.0.0.1); approving it grants
    alice, and bob, who holds the address next, is still blocked."""
    proxy, port = start(start_proxy, tmp_path)
    accounting(port, "Start", "alice", "sess-a")
    page = curl(proxy, f"https://{PAGE}/blocked", *HTML)
    token = re.search(
        r'action="/\.socialguard/request".*?name="token" value="([^"]+)"', page.body, re.S
    )
    assert page.status == 403 and token, "the block page offers the request form"
    answer = curl(
        proxy,
        f"https://{PAGE}/.socialguard/request",
        "--data-urlencode", f"token={token.group(1)}",
        "--data-urlencode", "reason=The yearbook page",
    )  # fmt: skip
    assert answer.status == 200, answer.body
    requests = json.loads(sg(proxy, "grant", "requests", "--json"))
    assert [r["who"] for r in requests] == ["user:alice"]
    sg(proxy, "grant", "approve", requests[0]["id"], "--for", "1h")
    wait_until_open(proxy, "/alice-poll")
    assert status(proxy, "/alice-page") == 200

    accounting(port, "Stop", "alice", "sess-a")
    accounting(port, "Start", "bob", "sess-b")
    assert status(proxy, "/bob-page") == 403
    seen = targets(origin)
    assert b"/alice-page" in seen and b"/bob-page" not in seen
    last = request_records(proxy)[-1]
    assert (last["user"], last["identified_by"], last["action"]) == ("bob", "radius", "block")


def test_a_devices_emergency_ends_with_its_dhcp_lease(
    start_proxy: Any, origin: Any, tmp_path: Path
) -> None:
    """The inventory knows laptop-17 by MAC; the DHCP lease says which address it holds. Its
    self-declared emergency is the device's: once the lease has expired (by the proxy's clock),
    whoever is on the address is not laptop-17, and the origin gets nothing from them."""
    devices = tmp_path / "devices.csv"
    devices.write_text("device,mac,ip,owner\nlaptop-17,AA-BB-CC-DD-EE-01,,ms-smith\n")
    at = datetime.now(UTC) + timedelta(minutes=1)
    leases = tmp_path / "dnsmasq.leases"
    expiry = int((at + timedelta(minutes=10)).timestamp())
    leases.write_text(f"{expiry} aa:bb:cc:dd:ee:01 127.0.0.1 laptop-17 *\n")
    rules = RULES.split("identity:", maxsplit=1)[0] + (
        f"identity:\n  dhcp:\n    - {{leases: {leases}, format: dnsmasq}}\n"
    )
    rules = rules.replace('networks: [127.0.0.0/8, "::1/128"]', f"devices: {devices}")
    rules = rules.replace("    who: [staff]\n", "    who: [staff, unknown]\n")
    rules = rules.replace("groups:\n", "groups:\n  unknown:\n    networks: [127.0.0.0/8]\n", 1)
    proxy = start_proxy(rules_text=rules, at=at)
    declare_emergency(proxy)
    wait_until_open(proxy, "/laptop-poll")
    assert status(proxy, "/laptop-page") == 200
    opened = [r for r in request_records(proxy) if r["basis"] == "emergency"][-1]
    assert opened["device"] == "laptop-17"

    proxy.clock.advance(timedelta(minutes=10))  # the lease has expired; the emergency has not
    assert status(proxy, "/after-lease-page") == 403
    seen = targets(origin)
    assert b"/laptop-page" in seen and b"/after-lease-page" not in seen
    last = request_records(proxy)[-1]
    assert (last["device"], last["action"], last["basis"]) == (None, "block", "rule")
