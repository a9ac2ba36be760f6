"""The rules file's own `tests:`: a failure says what differed and explains the decision."""

from __future__ import annotations

from pathlib import Path

from socialguard.policy import load_policy, run_policy_tests

DATA = Path(__file__).with_name("data")


def _with_tests(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "social.txt").write_text("twitter.com\n", encoding="utf-8")
    text = (DATA / "issue_example.yaml").read_text(encoding="utf-8") + "tests:\n" + tests
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_passing_and_failing_expectations(tmp_path: Path) -> None:
    path = _with_tests(
        tmp_path,
        '  - {url: "https://www.facebook.com/", client: 10.20.1.5, at: "2026-12-01T10:00", expect: block}\n'  # noqa: E501
        '  - {name: wrong on purpose, url: "https://twitter.com/", client: 10.20.1.5, at: "2026-12-01T10:00", expect: allow}\n'  # noqa: E501
        '  - {url: "https://twitter.com/", client: 10.20.1.5, at: "2026-12-01T10:00", expect: block, rule: approved-district-pages}\n',  # noqa: E501
    )
    results = run_policy_tests(load_policy(path))
    assert [r.passed for r in results] == [True, False, False]
    failed = results[1].describe()
    assert failed.startswith("FAIL line ")
    assert "wrong on purpose" in failed
    assert "expected allow, got block" in failed
    assert "rule staff-social-school-hours" in failed
    assert "trace: rule:staff-social-school-hours: matched (school-hours): block" in failed
    assert (
        "expected rule 'approved-district-pages', got staff-social-school-hours"
        in results[2].describe()
    )


def test_at_without_offset_is_district_local_time(tmp_path: Path) -> None:
    path = _with_tests(
        tmp_path,
        '  - {url: "https://twitter.com/", client: 10.20.1.5, at: "2026-12-01T07:30", expect: block}\n'  # noqa: E501
        '  - {url: "https://twitter.com/", client: 10.20.1.5, at: "2026-12-01T07:30Z", expect: allow}\n',  # noqa: E501
    )
    results = run_policy_tests(load_policy(path))
    assert [r.passed for r in results] == [True, True]


def test_a_test_that_cannot_run_fails_with_the_reason(tmp_path: Path) -> None:
    path = _with_tests(
        tmp_path,
        '  - {url: "https://twitter.com/", client: 10.20.1.999, at: "2026-12-01T10:00", expect: allow}\n',  # noqa: E501
    )
    (result,) = run_policy_tests(load_policy(path))
    assert not result.passed
    assert "cannot run" in result.describe()
