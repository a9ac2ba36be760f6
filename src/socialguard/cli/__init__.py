"""The `socialguard` command.

Each area's commands live in their own module; this file only wires them.
"""

from __future__ import annotations

import typer

from socialguard import __version__
from socialguard.cli.helpfmt import HelpGroup
from socialguard.fsmode import restrict_umask

from . import (
    audit_cmd,
    ca_cmd,
    check_cmd,
    deploy_cmd,
    emergency_cmd,
    grant_cmd,
    init_cmd,
    rules_cmd,
    run_cmd,
    who_cmd,
)

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    name="socialguard",
    help="Enforce the district's social networking policy on the wire, and prove it did.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("init")(init_cmd.init)
app.command("run")(run_cmd.run)
app.command("check")(check_cmd.check)
app.command("who")(who_cmd.who)
app.add_typer(rules_cmd.app, name="rules")
app.add_typer(grant_cmd.app, name="grant")
app.add_typer(emergency_cmd.app, name="emergency")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(ca_cmd.app, name="ca")
app.add_typer(deploy_cmd.app, name="deploy")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"socialguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Enforce the district's social networking policy on the wire, and prove it did."""


def main() -> None:
    restrict_umask()  # before anything is created: other accounts get nothing (socialguard.fsmode)
    app(prog_name="socialguard")
