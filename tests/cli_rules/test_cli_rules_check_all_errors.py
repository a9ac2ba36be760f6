"""`rules check` reports every error at once, whatever its kind: a schema error (a misspelt
action) no longer hides a reference error (an unknown group) elsewhere in the file, and an entry
that failed the schema does not make the rest report it as missing."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from socialguard.cli import app

HEAD = """\
district:
  name: X
  timezone: America/Denver
groups:
  staff:
    networks: [10.0.0.0/8]
categories:
  social:
    description: s
    domains: [facebook.com]
"""


def check(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    (tmp_path / "r.yaml").write_text(text)
    cwd = Path.cwd()
    os.chdir(tmp_path)  # messages name the file as given
    try:
        r = CliRunner().invoke(app, ["rules", "check", "r.yaml"])
    finally:
        os.chdir(cwd)
    return r.exit_code, r.stderr.splitlines()


def test_a_schema_error_and_a_reference_error_are_both_reported(tmp_path: Path) -> None:
    code, err = check(tmp_path, HEAD + """\
rules:
  - id: a
    description: d
    who: [nosuchgroup]
    what: {categories: [social]}
    action: block
  - id: b
    description: d
    who: [staff]
    what: {categories: [social]}
    action: blok
default: allow
""")  # fmt: skip
    assert code == 1
    assert err == [
        "error: r.yaml:14: rules[0].who[0]: unknown group 'nosuchgroup'",
        "error: r.yaml:21: rules[1].action: input should be 'allow' or 'block' (got 'blok')",
        "r.yaml: invalid (2 problems)",
    ]


def test_an_entry_that_failed_the_schema_is_not_also_reported_missing(tmp_path: Path) -> None:
    code, err = check(tmp_path, HEAD.replace("domains: [facebook.com]", "domains: facebook.com")
        + """\
  chat:
    description: c
    domain: [chat.example]
rules:
  - id: a
    description: d
    who: [staff]
    what: {categories: [social, chat, nosuch]}
    action: block
  - id: b
    description: d
    action: blok
tests:
  - {url: "https://facebook.com/", client: 10.0.0.1, at: "2026-12-01T10:00", expect: block, rule: b}
  - {url: "https://facebook.com/", client: 10.0.0.1, at: "2026-12-01T10:00", expect: nope}
""")  # fmt: skip
    assert code == 1
    assert [e.split(": ", 3)[2] for e in err[:-1]] == [
        "categories.social.domains",
        "categories.chat.domain",
        "rules[0].what.categories[2]",
        "rules[1].action",
        "tests[1].expect",
    ], err
    assert "unknown category 'nosuch'" in err[2]
    assert err[-1] == "r.yaml: invalid (5 problems)"
