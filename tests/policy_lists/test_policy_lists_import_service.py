"""`rules import --service`: an imported list's domains attached to a service, so that a grant or
emergency for the service opens them too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
district:
  name: Test District
  timezone: America/Denver
include: [services.yaml]
categories:
  social:
    lists: [lists/social.txt, lists/facebook-extra.txt]
"""


def test_an_imported_list_attached_to_a_service_belongs_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lists").mkdir()
    shutil.copy(ROOT / "rules" / "services.yaml", tmp_path / "services.yaml")
    shutil.copy(ROOT / "rules" / "lists" / "social.txt", tmp_path / "lists" / "social.txt")
    (tmp_path / "mine.txt").write_text("facebook-regional.example\nfbsbx-cache.example\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["rules", "import", "plain", "mine.txt", "--category", "facebook-extra",
         "--out", "lists", "--service", "facebook"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    snippet = result.stdout.split("(a path relative to it):\n", 1)[1]
    assert snippet == "services:\n  facebook: {lists: [lists/facebook-extra.txt]}\n"
    (tmp_path / "policy.yaml").write_text(POLICY + snippet)
    policy = load_policy(tmp_path / "policy.yaml")
    assert policy.service_of("cdn.facebook-regional.example") == "facebook"
    assert policy.service_of("static.xx.fbcdn.net") == "facebook"  # the catalogue's, kept


def test_a_bad_service_id_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.txt").write_text("a.example\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["rules", "import", "plain", "mine.txt", "--category", "x", "--service", "Face Book"]
    )
    assert result.exit_code == 2
    assert "--service 'Face Book'" in result.stderr
    assert not (tmp_path / "rules").exists()
