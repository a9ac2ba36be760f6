"""The uploads: and accounts: sections as written in a rules file, through the policy loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialguard.errors import PolicyError
from socialguard.policy import load_policy

GOOD = """\
district: {name: Example School District}
uploads:
  max_body: 10MB
  markers:
    - {name: confidential, pattern: CONFIDENTIAL, ignore_case: true}
accounts:
  google: [district.org]
  microsoft:
    tenants: [district.onmicrosoft.com]
    context: 72f988bf-86f1-41af-91ab-2d7cd011db47
"""


def test_a_rules_file_with_both_sections_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD, encoding="utf-8")
    load_policy(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "uploads:\n  max_body: lots\n",
            "policy.yaml:3: uploads.max_body: size 'lots' must look like 10MB",
        ),
        (
            "uploads:\n  markers:\n    - {name: x, pattern: '(open'}\n",
            "policy.yaml:4: uploads.markers[0].pattern: not a valid regular expression",
        ),
        (
            "accounts:\n  microsoft: {tenants: [district.org]}\n",
            "policy.yaml:3: accounts.microsoft.context:",
        ),
        (
            "accounts:\n  gmail: [district.org]\n",
            "policy.yaml:3: accounts.gmail:",
        ),
    ],
)
def test_mistakes_in_either_section_name_file_line_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("district: {name: X}\n" + text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    shown = [str(p) for p in caught.value.problems]
    assert any(line.startswith(f"{tmp_path}/{expected}") for line in shown), shown
