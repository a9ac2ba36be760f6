"""Every command a user can type has help with an example, and the README documents it.

The list of commands is read from the CLI itself, so a new command without help or README entry fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer.main

from socialguard.cli import app

REPO = Path(__file__).resolve().parents[2]


def _leaf_commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    out: list[tuple[str, ...]] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            out.append(path)

    walk(root, ())
    return out


COMMANDS = _leaf_commands()


def test_the_cli_has_the_commands_the_issues_name() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in ["run", "check", "rules check", "rules test", "rules import", "grant add",
                     "emergency start", "audit verify", "ca init", "deploy nftables"]:
        assert expected in names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "socialguard", *command, "--help"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    body = result.stdout.split("Usage:", 1)[1].split("\n", 1)[1]  # everything after the usage line
    assert "example" in body.lower(), "help text should carry an example"
    assert "socialguard " + " ".join(command) in " ".join(body.split()), (
        "the example should show the command itself"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_command_is_documented_in_the_readme(command: tuple[str, ...]) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "socialguard " + " ".join(command) in readme
