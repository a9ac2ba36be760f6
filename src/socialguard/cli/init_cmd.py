"""`socialguard init`: a starter rules directory for an installation that has none."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from socialguard.cli.common import handles_errors


@handles_errors
def init(
    directory: Annotated[
        Path,
        typer.Argument(metavar="[DIR]", help="Where to write the rules.", show_default="rules"),
    ] = Path("rules"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite rules files that already exist there.")
    ] = False,
) -> None:
    """Write the shipped rules (district policy, demo rules, domain lists) into DIR to edit.

    An installed socialguard carries its rules inside the package; a checkout has them in rules/
    already. Refuses to overwrite existing files unless --force is given (exit 2).

    Example:

        socialguard init /etc/socialguard/rules
    """
    from socialguard.starter import lay_out

    written = lay_out(directory, force=force)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"next: socialguard rules check {directory / 'policy.yaml'}; "
        f"try it with socialguard run --rules {directory / 'demo.yaml'}"
    )
