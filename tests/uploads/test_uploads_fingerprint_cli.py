"""`socialguard rules fingerprint`: the real command in a subprocess; bad input in-process."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.policy.uploads import read_fingerprints


def sg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", "rules", "fingerprint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


@pytest.fixture
def district_files(tmp_path: Path) -> Path:
    root = tmp_path / "district"
    (root / "logos").mkdir(parents=True)
    (root / "photos" / "2026").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "logos" / "seal.png").write_bytes(os.urandom(3000))
    (root / "photos" / "2026" / "team.jpg").write_bytes(os.urandom(5000))
    (root / "handbook.pdf").write_bytes(b"%PDF-1.7 handbook")
    (root / ".git" / "config").write_text("hidden")
    (root / ".DS_Store").write_bytes(b"hidden")
    return root


def expected_lines(root: Path, names: list[str]) -> list[str]:
    return [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}" for n in names]


def test_prints_sorted_digests_with_relative_paths_skipping_hidden_files(
    district_files: Path,
) -> None:
    result = sg(str(district_files), cwd=district_files.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_lines(
        district_files, ["handbook.pdf", "logos/seal.png", "photos/2026/team.jpg"]
    )


def test_out_file_is_read_back_by_the_policy_and_not_fingerprinted_itself(
    district_files: Path,
) -> None:
    out = district_files / "fingerprints.txt"
    first = sg(str(district_files), "--out", str(out), cwd=district_files.parent)
    assert first.returncode == 0, first.stderr
    assert "fingerprinted 3 files" in first.stderr
    again = sg(str(district_files), "--out", str(out), cwd=district_files.parent)
    assert again.returncode == 0
    digests = read_fingerprints(out)
    assert sorted(digests.values()) == ["handbook.pdf", "logos/seal.png", "photos/2026/team.jpg"]


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_the_list_checks_out_with_sha256sum(district_files: Path) -> None:
    out = district_files / "fingerprints.txt"
    assert sg(str(district_files), "--out", str(out), cwd=district_files.parent).returncode == 0
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", "fingerprints.txt"],
        cwd=district_files,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "not a directory"),
        (lambda p: p.mkdir(), "no files to fingerprint"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "district"
    make(target)
    result = CliRunner().invoke(app, ["rules", "fingerprint", str(target)])
    assert result.exit_code == 2
    assert message in result.stderr
