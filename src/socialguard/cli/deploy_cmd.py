"""`socialguard deploy` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="deploy commands (not yet implemented).", no_args_is_help=True)
