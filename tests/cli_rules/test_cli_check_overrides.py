"""`socialguard check --state`: grants in the store change the dry run's answer, as in the proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ALWAYS = """\
district: {name: Test District}
groups:
  staff: {networks: [10.20.0.0/16]}
categories:
  social: {domains: [facebook.com]}
rules:
  - id: staff-social
    description: no social networking
    who: [staff]
    what: {categories: [social]}
    action: block
    bypass: [grant]
"""


def sg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
        env={**env, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_a_grant_in_the_store_lifts_the_block_unless_overrides_are_ignored(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALWAYS, encoding="utf-8")
    state = tmp_path / "state"
    ask = ("check", "https://www.facebook.com/", "--client", "10.20.1.5", "--rules", str(rules))
    before = sg(*ask, "--state", str(state), "--json")
    assert before.returncode == 1, before.stderr
    assert not (state / "socialguard.db").exists()  # a dry run never creates a store
    granted = sg(
        "grant",
        "add",
        "--who",
        "ip:10.20.1.5",
        "--site",
        "facebook.com",
        "--for",
        "1h",
        "--reason",
        "yearbook page",
        "--by",
        "tester",
        "--rules",
        str(rules),
        "--state",
        str(state),
    )
    assert granted.returncode == 0, granted.stderr
    after = sg(*ask, "--state", str(state), "--json")
    assert after.returncode == 0, after.stderr
    out = json.loads(after.stdout)
    assert (out["action"], out["basis"], out["rule"]) == ("allow", "grant", "staff-social")
    assert out["override_id"]
    ignored = sg(*ask, "--state", str(state), "--no-overrides", "--json")
    assert ignored.returncode == 1
    assert json.loads(ignored.stdout)["basis"] == "rule"
