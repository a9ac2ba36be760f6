"""Every command a user can type has help with an example, and the README documents it.

The list of commands is read from the CLI itself: a new command without help or README entry fails.
"""

from __future__ import annotations

import os
import re
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


def _help(command: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        app, [*command, "--help"], prog_name="socialguard", env={"COLUMNS": "100"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def _params(command: tuple[str, ...]) -> list[click.Parameter]:
    cmd: click.Command = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return [p for p in cmd.params if p.name != "help"]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_reads_as_plain_text_without_type_labels_or_markup(command: tuple[str, ...]) -> None:
    text = _help(command)
    usage = text.split("\n", 1)[0]
    assert "{" not in usage and "[[" not in usage, usage
    labels = re.findall(r"<(?:str|bool|int|float|path|file|datetime|list\[\w+\])>", text)
    assert labels == [], "type labels such as <str> or <bool>"
    for markup in ("[bold", "[/", "[green", "[red", "[dim", "╭", "│"):
        assert markup not in text, f"markup or box drawing {markup!r} leaked into the help"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_every_default_and_marks_required_options(command: tuple[str, ...]) -> None:
    text = " ".join(_help(command).split())
    for param in _params(command):
        if not isinstance(param, click.Option):
            continue
        name = max(param.opts, key=len)
        entry = text.split(name, 1)[1].split(" --", 1)[0]  # this option's line, up to the next
        if param.required:
            assert "[required]" in entry, f"{name} is required but not marked"
        default = param.default
        if param.is_flag or default in (None, "", (), []) or callable(default):
            continue
        assert "default" in entry, f"{name}: its default {default!r} is not shown"


OVERRIDE_COMMANDS = [c for c in COMMANDS if c[0] in ("grant", "emergency")]


@pytest.mark.parametrize("command", OVERRIDE_COMMANDS, ids=" ".join)
def test_every_override_command_takes_rules_state_and_json(command: tuple[str, ...]) -> None:
    """Scripts pass the same options to every grant and emergency command."""
    names = {o for p in _params(command) for o in getattr(p, "opts", [])}
    assert {"--rules", "--state", "--json"} <= names


def test_emergency_stop_with_nothing_in_force_is_not_an_error(tmp_path: Path) -> None:
    env = {"SOCIALGUARD_STATE": str(tmp_path / "state"), "SOCIALGUARD_RULES": ""}
    r = CliRunner().invoke(app, ["emergency", "stop", "--by", "it"], env=env)
    assert r.exit_code == 0, r.output
    assert r.stdout == "nothing to stop: no administrator-declared emergency is in force\n"
    r = CliRunner().invoke(app, ["emergency", "stop", "--json", "--by", "it"], env=env)
    assert (r.exit_code, r.stdout.strip()) == (0, "[]")
    r = CliRunner().invoke(app, ["emergency", "stop", "e-nosuch", "--by", "it"], env=env)
    assert r.exit_code == 2 and "no emergency with id 'e-nosuch'" in r.stderr
