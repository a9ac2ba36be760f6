"""load_policy: the issue's example loads as written; every kind of mistake is located file:line."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from socialguard.errors import PolicyError
from socialguard.policy import load_policy, run_policy_tests

DATA = Path(__file__).with_name("data")
REPO = Path(__file__).resolve().parents[2]


def test_the_issue_example_loads_exactly_as_written() -> None:
    policy = load_policy(DATA / "issue_example.yaml")
    assert policy.district.name == "Example School District"
    assert policy.district.timezone.key == "America/Denver"
    assert policy.group_names == {"staff", "admins", "students", "all-staff"}
    assert policy.category_names == {"social"}
    assert policy.schedule_names == {"school-hours"}
    assert [r.id for r in policy.rules] == ["approved-district-pages", "staff-social-school-hours"]
    assert policy.categories["social"].domain_count == 6  # 3 inline + 4 listed, facebook.com once
    assert policy.fail_mode == "closed"
    assert policy.overrides.grant_max == timedelta(hours=8)
    assert policy.logging.paths is False
    assert policy.auth.htpasswd is None
    assert policy.source_files[0] == DATA / "issue_example.yaml"
    assert DATA / "lists" / "social.txt" in policy.source_files
    assert policy.warnings == ()


@pytest.mark.parametrize("name", ["policy.yaml", "demo.yaml"])
def test_the_shipped_rules_load_and_pass_their_own_tests(name: str) -> None:
    policy = load_policy(REPO / "rules" / name)
    results = run_policy_tests(policy)
    assert len(results) >= 20
    assert [r.describe() for r in results if not r.passed] == []
    assert policy.warnings == ()


def test_the_shipped_tests_cover_every_enabled_rule() -> None:
    policy = load_policy(REPO / "rules" / "policy.yaml")
    hit = {r.decision.rule_id for r in run_policy_tests(policy) if r.decision}
    assert {r.id for r in policy.rules} <= hit


def test_demo_differs_from_the_district_policy_only_in_what_it_says_it_does() -> None:
    """Loopback is staff and `this-machine`; social is blocked there at all hours (after the
    district's school-hours rule); no `accounts:` restriction, whose example domains would stop
    anyone signing in through `make run`."""
    policy = load_policy(REPO / "rules" / "policy.yaml")
    demo = load_policy(REPO / "rules" / "demo.yaml")
    district_rules = [r.id for r in policy.rules]
    at = district_rules.index("staff-social-school-hours") + 1
    expected = [*district_rules[:at], "demo-social-all-hours", *district_rules[at:]]
    assert [r.id for r in demo.rules] == expected
    assert demo.group_names == policy.group_names | {"this-machine"}
    extra = set(map(str, (n for n, _ in demo.group_networks.entries))) - set(
        map(str, (n for n, _ in policy.group_networks.entries))
    )
    assert extra == {"127.0.0.0/8", "::1/128"}
    assert policy.accounts is not None and policy.accounts.google
    assert demo.accounts is None or (not demo.accounts.google and not demo.accounts.microsoft)


@pytest.mark.parametrize(
    ("at", "rule"),
    [
        ("2026-12-01T10:00", "staff-social-school-hours"),
        ("2026-12-01T20:00", "demo-social-all-hours"),
        ("2026-12-05T03:00", "demo-social-all-hours"),
    ],
)
def test_the_demo_blocks_social_on_this_machine_at_any_hour(at: str, rule: str) -> None:
    import json

    from typer.testing import CliRunner

    from socialguard.cli import app

    args = ["check", "https://www.facebook.com/", "--client", "127.0.0.1", "--at", at]
    rules = ["--rules", str(REPO / "rules" / "demo.yaml"), "--no-overrides", "--json"]
    r = CliRunner().invoke(app, [*args, *rules])
    assert r.exit_code == 1, r.output
    assert (json.loads(r.stdout)["action"], json.loads(r.stdout)["rule"]) == ("block", rule)


def test_the_version_changes_with_the_rules_and_the_lists_not_the_comments(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    src = (DATA / "issue_example.yaml").read_text(encoding="utf-8")
    (tmp_path / "lists" / "social.txt").write_text("facebook.com\n", encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(src, encoding="utf-8")
    v1 = load_policy(path).version
    path.write_text(src + "\n# a comment\n", encoding="utf-8")
    assert load_policy(path).version == v1
    test = '  - {url: "https://x.com/", client: 10.20.1.5, at: "2026-12-01T10:00", expect: block}\n'
    path.write_text(src + "tests:\n" + test, encoding="utf-8")
    assert load_policy(path).version == v1
    (tmp_path / "lists" / "social.txt").write_text("facebook.com\nreddit.com\n", encoding="utf-8")
    v2 = load_policy(path).version
    assert v2 != v1
    path.write_text(src.replace("default: allow", "default: block"), encoding="utf-8")
    assert load_policy(path).version not in (v1, v2)


MINIMAL = """\
district:
  name: D
groups:
  staff:
    networks: [10.20.0.0/16]
schedules:
  school-hours:
    weekly:
      mon-fri: ["07:30-16:00"]
categories:
  social:
    domains: [facebook.com]
rules:
  - id: staff-social
    description: no social
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
"""


def _problems(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> list[str]:
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [str(p).replace(str(path), "policy.yaml") for p in info.value.problems]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("who: [staff]", "who: [staf]"),
            "policy.yaml:16: rules[0].who[0]: unknown group 'staf' (did you mean 'staff'?)",
        ),
        (
            ("when: school-hours", "when: school-hour"),
            "policy.yaml:19: rules[0].when: unknown schedule 'school-hour' (did you mean 'school-hours'?)",  # noqa: E501
        ),
        (
            ("categories: [social]", "categories: [socal]"),
            "policy.yaml:18: rules[0].what.categories[0]: unknown category 'socal' (did you mean 'social'?)",  # noqa: E501
        ),
        (
            ("    action: block", "    action: blok"),
            "policy.yaml:20: rules[0].action: input should be 'allow' or 'block' (got 'blok')",
        ),
        (
            ("    action: block", "    action: block\n    colour: red"),
            "policy.yaml:21: rules[0].colour: unknown key 'colour'",
        ),
        (
            ("    description: no social\n", ""),
            "policy.yaml:14: rules[0].description: required, but missing",
        ),
        (
            ("07:30-16:00", "07:30-16:60"),
            "policy.yaml:9: schedules.school-hours.weekly.mon-fri[0]: time '16:60' in period '07:30-16:60' is not a time of day",  # noqa: E501
        ),
        (
            ("mon-fri", "mon-fry"),
            "policy.yaml:9: schedules.school-hours.weekly.mon-fry: unknown day 'fry' in 'mon-fry' (use mon, tue, wed, thu, fri, sat, sun)",  # noqa: E501
        ),
        (
            ("10.20.0.0/16", "10.20.1.0/16"),
            "policy.yaml:5: groups.staff.networks: '10.20.1.0/16' is not a network in CIDR form (10.20.1.0/16 has host bits set)",  # noqa: E501
        ),
        (
            ("[facebook.com]", "[face book.com]"),
            "policy.yaml:12: categories.social.domains[0]: not a valid host name: 'face book.com'",
        ),
        (
            ("  name: D", "  name: D\n  timezone: America/Denvr"),
            "policy.yaml:3: district.timezone: unknown IANA time zone 'America/Denvr' (e.g. America/Denver)",  # noqa: E501
        ),
        (
            ("    what:", "    whta:"),
            "policy.yaml:17: rules[0].whta: unknown key 'whta' (did you mean 'what'?)",
        ),
        (
            ("      categories: [social]", "      categroies: [social]"),
            "policy.yaml:18: rules[0].what.categroies: unknown key 'categroies' (did you mean 'categories'?)",  # noqa: E501
        ),
        (
            (
                'mon-fri: ["07:30-16:00"]',
                'mon-fri: ["07:30-16:00"]\n    closed: [2026-12-21..2026-12-01]',
            ),
            "policy.yaml:10: schedules.school-hours.closed[0]: date range '2026-12-21..2026-12-01' ends before it starts",  # noqa: E501
        ),
        (
            (
                'mon-fri: ["07:30-16:00"]',
                'mon-fri: ["07:30-16:00"]\n    special:\n      2026-13-01: ["07:30-12:00"]',
            ),
            "policy.yaml:11: schedules.school-hours.special.2026-13-01: '2026-13-01' is not a date (YYYY-MM-DD)",  # noqa: E501
        ),
        (("rules:", "rule:"), "policy.yaml:13: rule: unknown key 'rule' (did you mean 'rules'?)"),
        (
            ("  staff:\n", "  staff:\n    include: [nobody]\n"),
            "policy.yaml:5: groups.staff.include[0]: unknown group 'nobody'",
        ),
        (
            ("    when: school-hours", "    when: {nott: school-hours}"),
            "policy.yaml:19: rules[0].when: must be a schedule name or {not: SCHEDULE}",
        ),
        (
            ("    action: block", "    action: block\n    bypass: [grants]"),
            "policy.yaml:21: rules[0].bypass: must list grant and/or emergency, or be none",
        ),
    ],
)
def test_each_kind_of_mistake_is_reported_with_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in MINIMAL
    assert _problems(tmp_path, MINIMAL.replace(old, new, 1)) == [expected]


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, MINIMAL.replace("    who: [staff]", "    who: [staff"))
    assert len(problems) == 1
    assert problems[0].startswith("policy.yaml:1") and "YAML syntax" in problems[0]


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    problems = _problems(tmp_path, MINIMAL.replace("  name: D", "  name: D\n  name: E"))
    assert problems == ["policy.yaml:3: district.name: duplicate key name (first given on line 2)"]


def test_duplicate_rule_ids_are_refused(tmp_path: Path) -> None:
    rules = MINIMAL.split("rules:\n", 1)[1]
    problems = _problems(tmp_path, MINIMAL + rules)
    assert problems == [
        "policy.yaml:21: rules[1].id: rule id 'staff-social' is already used by rules[0]"
    ]


def test_a_missing_list_and_a_group_cycle_are_reported_together(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    domains: [facebook.com]", "    domains: [facebook.com]\n    lists: [lists/nope.txt]"
    )
    text = text.replace("  staff:\n", "  staff:\n    include: [staff]\n")
    problems = _problems(tmp_path, text)
    assert any(
        "categories.social.lists[0]: domain list 'lists/nope.txt' not found" in p for p in problems
    )
    assert any("groups.staff.include: group 'staff' includes itself" in p for p in problems)


def test_a_time_without_quotes_is_not_read_as_a_number(tmp_path: Path) -> None:
    problems = _problems(tmp_path, MINIMAL.replace('["07:30-16:00"]', "[7:30]"))
    assert problems == [
        "policy.yaml:9: schedules.school-hours.weekly.mon-fri[0]: "
        "period '7:30' must look like 'HH:MM-HH:MM'"
    ]


def test_a_shadowed_rule_is_a_warning_not_an_error(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  - id: later-facebook\n"
        "    description: never reached\n"
        "    who: [staff]\n"
        "    what:\n"
        "      domains: [m.facebook.com]\n"
        "    when: school-hours\n"
        "    action: allow\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)
    assert [str(w).replace(str(path), "p.yaml") for w in policy.warnings] == [
        "p.yaml:21: rules[1]: rule 'later-facebook' can never match: rule 'staff-social' (rules[0]) matches all its requests first"  # noqa: E501
    ]


def test_includes_share_groups_categories_and_schedules(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text(
        "groups:\n  admins:\n    networks: [10.10.0.0/16]\ncategories:\n  chat:\n    domains: [chat.example]\n",  # noqa: E501
        encoding="utf-8",
    )
    text = MINIMAL.replace("groups:", "include: [shared.yaml]\ngroups:").replace(
        "who: [staff]", "who: [staff, admins]"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)
    assert "admins" in policy.group_names and "chat" in policy.category_names
    assert tmp_path / "shared.yaml" in policy.source_files


def test_a_definition_repeated_in_an_include_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text(
        "groups:\n  staff:\n    networks: [10.30.0.0/16]\n", encoding="utf-8"
    )
    problems = _problems(tmp_path, MINIMAL.replace("groups:", "include: [shared.yaml]\ngroups:"))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{tmp_path}/shared.yaml:2: groups.staff: group 'staff' is already defined in"
    )


def test_a_disabled_rule_is_validated_but_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        MINIMAL.replace("    action: block", "    action: block\n    enabled: false"),
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.rules == () and policy.disabled_rules == ("staff-social",)
    path.write_text(
        MINIMAL.replace("    action: block", "    action: block\n    enabled: false").replace(
            "[staff]", "[staf]"
        ),
        encoding="utf-8",
    )
    with pytest.raises(PolicyError, match="unknown group 'staf'"):
        load_policy(path)


def test_schedule_extends_inherits_closed_days(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'mon-fri: ["07:30-16:00"]',
        'mon-fri: ["07:30-16:00"]\n    closed: [2026-11-26]\n  high-school:\n    extends: school-hours\n    weekly:\n      mon-fri: ["08:00-15:30"]',  # noqa: E501
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    hs = load_policy(path).schedules["high-school"]
    assert hs.closed == {__import__("datetime").date(2026, 11, 26)}
    assert str(hs.weekly[0][0]) == "08:00-15:30"


def test_a_missing_file_is_reported() -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(Path("/nonexistent/policy.yaml"))


def test_uploads_and_accounts_sections_reach_the_compiled_policy(tmp_path: Path) -> None:
    (tmp_path / "fingerprints.txt").write_text("ab" * 32 + "  logo.png\n", encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(
        MINIMAL
        + "uploads:\n  fingerprints: [fingerprints.txt]\n"
        + "accounts:\n  google: [example.org]\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert dict(policy.uploads.fingerprints) == {"ab" * 32: "logo.png"}
    assert policy.accounts is not None and policy.accounts.google == ["example.org"]
    assert tmp_path / "fingerprints.txt" in policy.source_files
    (tmp_path / "fingerprints.txt").write_text("not a digest\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"fingerprints\.txt:1: fingerprints: expected a 64"):
        load_policy(path)
