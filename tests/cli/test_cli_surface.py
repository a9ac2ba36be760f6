"""Every command a user can type has help with an example, and the README documents it.

The list of commands is read from the CLI itself: a new command without help or README entry fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from socialguard.cli import app

REPO = Path(__file__).resolve().parents[2]


def _leaf_commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    out: list[tuple[str, ...]] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        subcommands = getattr(cmd, "commands", None)  # click/typer groups of any click version
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        else:
            out.append(path)

    walk(root, ())
    return out


COMMANDS = _leaf_commands()


def test_the_cli_has_the_commands_the_issues_name() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in [
        "init",
        "run",
        "check",
        "rules check",
        "rules test",
        "rules import",
        "grant add",
        "emergency start",
        "audit verify",
        "ca init",
        "deploy nftables",
    ]:
        assert expected in names


def test_the_installed_command_starts_and_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "socialguard", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: socialguard" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    # In-process: the click tree the console script runs, without ~1 s of start-up each.
    result = CliRunner().invoke(
        app, [*command, "--help"], prog_name="socialguard", env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    body = result.stdout.split("Usage:", 1)[1].split("\n", 1)[1]  # everything after the usage line
    assert "example" in body.lower(), "help text should carry an example"
    assert "socialguard " + " ".join(command) in " ".join(body.split()), (
        "the example should show the command itself"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_is_documented_in_the_readme(command: tuple[str, ...]) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "socialguard " + " ".join(command) in readme
