"""`socialguard rules import`: bring a UT1/hosts/plain domain list into rules/lists/."""

from __future__ import annotations

import typer


def import_list() -> None:
    """Not yet implemented."""
    raise typer.Exit(3)
