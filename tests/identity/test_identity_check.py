"""`socialguard check --from ADDRESS URL` asks the identity bindings who the address is, as the
proxy does: the person a source bound it to is the principal, and the answer says which source."""

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
categories:
  social:
    description: Social networking sites
    domains: [facebook.com]
rules:
  - id: officer-allowed
    description: The district's social media officer
    who: [user:asmith]
    what:
      categories: [social]
    action: allow
  - id: staff-social
    description: Individual use of social networking is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
default: allow
identity:
  radius:
    listen: 127.0.0.1:1813
    secret_file: radius.secret
  groups:
    Staff-WiFi: [staff]
  networks: [10.20.0.0/16]
  unidentified: unknown
"""


def setup(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(RULES)
    (tmp_path / "radius.secret").write_text("s\n")
    store = BindingStore(tmp_path / "state" / BINDINGS_DB)
    now = time.time()
    b = Binding("10.20.3.4", "radius", "jdoe", frozenset({"Staff-WiFi"}), None, now, now + 600)
    ended = Binding("10.20.3.9", "radius", "asmith", frozenset(), None, now - 900, now - 300)
    officer = Binding("10.20.7.7", "radius", "asmith", frozenset(), None, now, now + 600)
    store.write({"10.20.3.4": b, "10.20.3.9": ended, "10.20.7.7": officer}, {})
    store.close()


def run_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", "check", "https://www.facebook.com/", *args,
         "--rules", str(tmp_path / "policy.yaml"), "--state", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_check_from_a_bound_address_decides_for_the_person_and_names_the_source(
    tmp_path: Path,
) -> None:
    setup(tmp_path)
    done = run_check(tmp_path, "--from", "10.20.3.4")
    assert done.returncode == 1, done.stderr  # blocked: jdoe is staff by their Wi-Fi group
    assert "who:        10.20.3.4 user jdoe (identified by radius) → groups: staff" in done.stdout
    out = json.loads(run_check(tmp_path, "--from", "10.20.3.4", "--json").stdout)
    assert (out["user"], out["identified_by"], out["groups"], out["action"]) == (
        "jdoe",
        "radius",
        ["staff"],
        "block",
    )


def test_check_from_an_address_whose_binding_ended_decides_for_no_one(tmp_path: Path) -> None:
    """asmith's binding ended: the address is unidentified (unknown here), not asmith."""
    setup(tmp_path)
    done = run_check(tmp_path, "--client", "10.20.3.9", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["user"], out["identified_by"], out["groups"], out["rule"]) == (
        None,
        None,
        [],
        None,
    )


def test_check_with_a_user_given_asks_no_source(tmp_path: Path) -> None:
    setup(tmp_path)
    done = run_check(tmp_path, "--from", "10.20.3.4", "--user", "asmith", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["user"], out["identified_by"], out["rule"]) == ("asmith", None, "officer-allowed")


def test_a_rule_for_a_user_applies_to_the_person_a_source_bound(tmp_path: Path) -> None:
    setup(tmp_path)
    done = run_check(tmp_path, "--from", "10.20.7.7", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["user"], out["identified_by"], out["rule"]) == (
        "asmith",
        "radius",
        "officer-allowed",
    )
