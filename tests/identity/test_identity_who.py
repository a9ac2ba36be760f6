"""`socialguard who ADDRESS`, run as a real command against a real store and lease file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from socialguard.engine.identity import Binding
from socialguard.identity.store import BINDINGS_DB, BindingStore

RULES = """\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [10.20.0.0/16]
identity:
  radius:
    listen: 127.0.0.1:1813
    secret_file: radius.secret
  dhcp:
    - leases: dnsmasq.leases
  groups:
    Staff-WiFi: [staff]
  networks: [10.20.0.0/16]
  unidentified: unknown
"""


def run_who(tmp_path: Path, address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", "who", address, "--rules",
         str(tmp_path / "policy.yaml"), "--state", str(tmp_path / "state"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def setup(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(RULES)
    (tmp_path / "radius.secret").write_text("s\n")
    expiry = int(time.time()) + 3600
    (tmp_path / "dnsmasq.leases").write_text(
        f"{expiry} aa:bb:cc:dd:ee:01 10.20.3.4 laptop *\n{int(time.time()) - 5} "
        "aa:bb:cc:dd:ee:02 10.20.3.5 old *\n"
    )
    store = BindingStore(tmp_path / "state" / BINDINGS_DB)
    now = time.time()
    b = Binding("10.20.3.4", "radius", "jdoe", frozenset({"Staff-WiFi"}), None, now, now + 600)
    store.write({"10.20.3.4": b}, {"10.20.3.4": ("s1", "wlc-1")})
    store.close()


def test_who_names_the_person_the_source_and_the_policy_groups(tmp_path: Path) -> None:
    setup(tmp_path)
    done = run_who(tmp_path, "10.20.3.4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "10.20.3.4: jdoe (from radius)"
    assert "policy groups: staff" in done.stdout
    assert "MAC aa:bb:cc:dd:ee:01 (DHCP lease until" in done.stdout


def test_who_says_when_no_one_is_bound_and_an_expired_lease_is_no_lease(tmp_path: Path) -> None:
    setup(tmp_path)
    done = run_who(tmp_path, "10.20.3.5", "--json")
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert (out["user"], out["source"], out["mac"], out["groups"]) == (None, None, None, [])


def test_who_refuses_a_bad_address(tmp_path: Path) -> None:
    setup(tmp_path)
    done = run_who(tmp_path, "10.20.3")
    assert done.returncode == 2
    assert "ADDRESS:" in done.stderr


def test_who_finds_an_ipv6_address_in_a_bound_prefix(tmp_path: Path) -> None:
    setup(tmp_path)
    store = BindingStore(tmp_path / "state" / BINDINGS_DB)
    now = time.time()
    prefix = "2001:db8:1:2::/64"
    b = Binding(prefix, "radius", "asmith", frozenset({"Staff-WiFi"}), None, now, now + 600)
    store.write({prefix: b}, {prefix: ("s6", "wlc-1")})
    store.close()
    done = run_who(tmp_path, "2001:db8:1:2:aa:bb:cc:dd", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["user"], out["source"]) == ("asmith", "radius")
    assert run_who(tmp_path, "2001:db8:1:3::1").returncode == 1
