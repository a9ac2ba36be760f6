"""`socialguard rules check/test` and `socialguard check`, run as the real command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "policy" / "data"


def sg(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("SOCIALGUARD_RULES", None)
    env.pop("SOCIALGUARD_STATE", None)
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "rules")
    return tmp_path / "rules"


def test_rules_check_summarises_a_valid_file_and_runs_its_tests() -> None:
    r = sg("rules", "check", "rules/policy.yaml")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("rules/policy.yaml: valid (version ")
    assert "groups (4): admins, all-staff, staff, students" in out
    assert "  social: " in out and " domains" in out
    assert "staff-social-school-hours: block" in out
    assert "staff-messaging-school-hours: switched off" in out
    assert out.rstrip().endswith("failed") and ", 0 failed" in out


def test_rules_check_defaults_to_the_shipped_rules() -> None:
    r = sg("rules", "check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("rules/policy.yaml: valid")


def test_rules_check_reports_every_error_with_file_and_line(rules_dir: Path) -> None:
    path = rules_dir / "issue_example.yaml"
    text = (
        path.read_text(encoding="utf-8")
        .replace("who: [staff]", "who: [staf]")
        .replace("when: school-hours ", "when: school-hour ")
    )
    path.write_text(text, encoding="utf-8")
    r = sg("rules", "check", str(path))
    assert r.returncode == 1
    assert (
        f"error: {path}:38: rules[1].who[0]: unknown group 'staf' (did you mean 'staff'?)"
        in r.stderr
    )
    assert (
        f"error: {path}:41: rules[1].when: unknown schedule 'school-hour' (did you mean 'school-hours'?)"  # noqa: E501
        in r.stderr
    )
    assert r.stderr.rstrip().endswith("invalid (2 problems)")
    assert r.stdout == ""


def test_rules_check_json_gives_scripts_the_summary() -> None:
    r = sg("rules", "check", "rules/policy.yaml", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["file"], out["valid"], out["default"]) == ("rules/policy.yaml", True, "allow")
    assert out["groups"] == ["admins", "all-staff", "staff", "students"]
    assert out["categories"]["social"]["domains"] > 100
    assert {"id": "staff-social-school-hours", "action": "block"} in out["rules"]
    assert "staff-messaging-school-hours" in out["switched_off"]
    assert out["tests"]["failed"] == 0 and out["tests"]["passed"] > 0


def test_rules_check_json_lists_every_problem_of_an_invalid_file(rules_dir: Path) -> None:
    path = rules_dir / "issue_example.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("who: [staff]", "who: [staf]"), encoding="utf-8"
    )
    r = sg("rules", "check", str(path), "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert (out["valid"], out["file"]) == (False, str(path))
    assert out["problems"] == [
        f"{path}:38: rules[1].who[0]: unknown group 'staf' (did you mean 'staff'?)"
    ]


def test_rules_check_prints_warnings_but_succeeds(rules_dir: Path) -> None:
    path = rules_dir / "issue_example.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "default: allow",
            "  - {id: dead, description: dead, who: [staff], what: {domains: [m.facebook.com]},"
            " when: school-hours, action: allow}\ndefault: allow",
        ),
        encoding="utf-8",
    )
    r = sg("rules", "check", str(path))
    assert r.returncode == 0, r.stderr
    assert "warning: " in r.stderr and "rule 'dead' can never match" in r.stderr


def test_rules_check_of_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from socialguard.cli import app

    r = CliRunner().invoke(app, ["rules", "check", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: rules file not found"


def test_rules_test_passes_the_shipped_rules() -> None:
    r = sg("rules", "test", "rules/demo.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(" passed, 0 failed")


def test_rules_test_fails_with_the_decisions_explanation(rules_dir: Path) -> None:
    path = rules_dir / "issue_example.yaml"
    path.write_text(
        path.read_text(encoding="utf-8")
        + 'tests:\n  - {url: "https://www.facebook.com/", client: 10.20.1.5, at: "2026-12-01T10:00", expect: allow}\n',  # noqa: E501
        encoding="utf-8",
    )
    r = sg("rules", "test", str(path))
    assert r.returncode == 1
    assert "FAIL line 46" in r.stderr
    assert "expected allow, got block" in r.stderr
    assert (
        "reason: Individual use of social networking during school hours is prohibited" in r.stderr
    )
    assert "trace: rule:staff-social-school-hours: matched (school-hours): block" in r.stderr
    assert r.stdout.strip() == "tests: 0 passed, 1 failed"


def test_check_blocked_in_school_hours_exits_1_with_the_explanation() -> None:
    r = sg("check", "https://m.facebook.com/", "--client", "10.20.1.5", "--at", "2026-12-01T10:00")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "BLOCK  https://m.facebook.com/"
    assert "  who:        10.20.1.5 → groups: all-staff, staff" in lines
    assert "  at:         2026-12-01T10:00:00-07:00" in lines
    assert any(
        line.startswith("  rule:       staff-social-school-hours (rules/policy.yaml:")
        for line in lines
    )
    assert "  category:   social (matched facebook.com)" in lines
    assert "    rule:staff-social-school-hours: matched (school-hours): block" in lines


def test_check_outside_school_hours_is_allowed() -> None:
    r = sg("check", "https://m.facebook.com/", "--client", "10.20.1.5", "--at", "2026-12-01T18:00")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ALLOW  https://m.facebook.com/")


def test_check_at_with_an_offset_is_that_instant() -> None:
    # 17:30Z is 10:30 in Denver (MST): school hours
    r = sg(
        "check",
        "https://facebook.com/",
        "--client",
        "10.20.1.5",
        "--at",
        "2026-12-01T17:30:00+00:00",
        "--json",
    )
    assert r.returncode == 1
    assert json.loads(r.stdout)["at"] == "2026-12-01T10:30:00-07:00"


def test_check_json_has_the_contract_fields() -> None:
    r = sg(
        "check",
        "https://www.example.org/a",
        "--client",
        "10.20.1.5",
        "--at",
        "2026-12-01T10:00",
        "--json",
        "--rules",
        "rules/demo.yaml",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in (
        "action",
        "basis",
        "rule",
        "category",
        "reason",
        "groups",
        "policy_version",
        "trace",
    ):
        assert key in out
    assert (out["action"], out["basis"], out["rule"], out["connection"]) == (
        "allow",
        "default",
        None,
        "pass",
    )
    assert out["groups"] == ["all-staff", "staff"]


def test_check_with_the_demo_rules_counts_loopback_as_staff() -> None:
    r = sg(
        "check",
        "https://www.instagram.com/",
        "--client",
        "127.0.0.1",
        "--rules",
        "rules/demo.yaml",
        "--at",
        "2026-12-02T09:00",
        "--json",
    )
    assert r.returncode == 1
    assert json.loads(r.stdout)["rule"] == "staff-social-school-hours"


def test_check_with_invalid_rules_lists_every_problem(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from socialguard.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("district: {name: D}\nrules: [{id: a}]\n", encoding="utf-8")
    r = CliRunner().invoke(
        app, ["check", "https://x.example/", "--client", "10.0.0.1", "--rules", str(bad)]
    )
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"error: {bad}:2: rules[0].description: required, but missing",
        f"error: {bad}:2: rules[0].action: required, but missing",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["https://x.example/", "--client", "10.20.1.999"], "error: --client/--mac: "),
        (["not a url", "--client", "10.20.1.5"], "error: URL: 'not a url' is not an http(s) URL"),
        (
            ["https://x.example/", "--client", "10.20.1.5", "--at", "tuesday"],
            "error: --at: 'tuesday' is not an ISO-8601 time",
        ),
        (
            ["https://x.example/", "--client", "10.20.1.5", "--rules", "/nonexistent.yaml"],
            "error: /nonexistent.yaml: rules file not found",
        ),
        (
            ["https://x.example/", "--client", "10.20.1.5", "--mac", "zz"],
            "error: --client/--mac: not a MAC address: 'zz'",
        ),
    ],
)
def test_check_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    """In-process (typer's CliRunner) to keep the area fast; the main paths above are real runs."""
    from typer.testing import CliRunner

    from socialguard.cli import app

    r = CliRunner().invoke(
        app, ["check", *args], env={"SOCIALGUARD_RULES": str(REPO / "rules" / "policy.yaml")}
    )
    assert r.exit_code == 2
    assert r.stderr.startswith(message)
