"""`socialguard check`: would this person reach this URL at this moment, and why?"""

from __future__ import annotations

import typer


def check() -> None:
    """Not yet implemented."""
    raise typer.Exit(3)
