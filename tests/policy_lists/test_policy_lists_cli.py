"""`socialguard rules import`: the happy paths as the real command in a subprocess, the tables of
bad input in-process (typer's CliRunner), which keeps this area fast."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.policy.lists import read_domain_list

UT1 = Path(__file__).resolve().parents[3] / "shared" / "data" / "ut1"


def sg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", "rules", "import", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def sg_inline(mp: pytest.MonkeyPatch, cwd: Path, *args: str) -> tuple[int, str, str]:
    mp.chdir(cwd)
    result = CliRunner().invoke(app, ["rules", "import", *args])
    return result.exit_code, result.stdout, result.stderr


def test_import_writes_the_list_under_rules_lists_and_reports_counts(tmp_path: Path) -> None:
    source = tmp_path / "mine.txt"
    source.write_text("# mine\nA.com\na.com.\nb.com\nbad..com\nc.com:80\n", encoding="utf-8")
    result = sg("plain", str(source), "--category", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "rules" / "lists" / "mine.txt"
    assert result.stdout.strip() == (
        f"imported {source} (plain) into rules/lists/mine.txt: kept 2 domains, "
        "dropped 1 duplicates and 2 invalid lines"
    )
    assert result.stderr.splitlines() == [
        f"{source}:5: empty label: bad..com",
        f"{source}:6: has a port; list the name only: c.com:80",
    ]
    body = [line for line in target.read_text().splitlines() if not line.startswith("#")]
    assert body == ["a.com", "b.com"]
    assert read_domain_list(target).domains == ["a.com", "b.com"]


def test_invalid_lines_shown_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "bad.txt"
    source.write_text("ok.com\n" + "x..y\n" * 25, encoding="utf-8")
    code, _, err = sg_inline(monkeypatch, tmp_path, "plain", str(source), "--category", "bad")
    assert code == 0
    assert len(err.splitlines()) == 21
    assert err.splitlines()[-1] == "... and 5 more invalid lines"


@pytest.mark.skipif(not UT1.is_dir(), reason="shared UT1 data not present")
def test_importing_ut1_social_networks_keeps_every_entry_and_names_the_licence(
    tmp_path: Path,
) -> None:
    source = UT1 / "social_networks.domains"
    lines = [x.strip() for x in source.read_text(encoding="utf-8").splitlines() if x.strip()]
    count = len(set(lines))
    out = tmp_path / "lists"
    result = sg("ut1", str(source), "--category", "social-ut1", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"kept {count} domains, dropped {len(lines) - count} duplicates" in result.stdout
    text = (out / "social-ut1.txt").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in text
    assert "social_networks.domains" in text
    assert sorted(read_domain_list(out / "social-ut1.txt").domains) == sorted(set(lines))


def test_import_auto_reads_a_gzipped_hosts_file(tmp_path: Path) -> None:
    source = tmp_path / "hosts.gz"
    with gzip.open(source, "wt") as f:
        f.write("127.0.0.1 localhost\n0.0.0.0 ads.example.com\n0.0.0.0 t.example.net\n")
    result = sg("auto", str(source), "--category", "ads", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(hosts)" in result.stdout
    assert "kept 2 domains" in result.stdout
    assert "ignored 1 localhost entries" in result.stdout


def test_an_existing_list_is_kept_without_force(tmp_path: Path) -> None:
    source = tmp_path / "new.txt"
    source.write_text("new.com\n", encoding="utf-8")
    target = tmp_path / "rules" / "lists" / "social.txt"
    target.parent.mkdir(parents=True)
    target.write_text("old.com\n", encoding="utf-8")
    refused = sg("plain", str(source), "--category", "social", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: rules/lists/social.txt exists; pass --force to replace it"
    )
    assert target.read_text() == "old.com\n"
    forced = sg("plain", str(source), "--category", "social", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert read_domain_list(target).domains == ["new.com"]
    assert [p.name for p in target.parent.iterdir()] == ["social.txt"]  # no temp file left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plain", "missing.txt", "--category", "x"], "error: missing.txt: no such file"),
        (["plain", "{src}", "--category", "Bad Name"], "error: --category 'Bad Name'"),
        (["plain", "{empty}", "--category", "x"], "no usable domain in 1 lines; nothing written"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    (tmp_path / "src.txt").write_text("a.com\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    args = [a.format(src="src.txt", empty="empty.txt") for a in args]
    code, _, err = sg_inline(monkeypatch, tmp_path, *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "rules").exists()


def test_unknown_format_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = sg_inline(monkeypatch, tmp_path, "csv", "x.txt", "--category", "x")
    assert code == 2
    assert "csv" in err


def test_import_writes_beside_the_rules_file_wherever_it_is_run(tmp_path: Path) -> None:
    """The rules file reads `lists:` relative to itself; the import writes there too, not
    relative to the directory the command happens to run in."""
    site = tmp_path / "etc" / "socialguard"
    site.mkdir(parents=True)
    (site / "policy.yaml").write_text("# rules\n")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    source = tmp_path / "list.txt"
    source.write_text("example.com\n")
    r = sg("plain", str(source), "--category", "extra", "--rules", str(site / "policy.yaml"),
           cwd=elsewhere)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert read_domain_list(site / "lists" / "extra.txt").domains == ["example.com"]
    assert not (elsewhere / "rules").exists()
