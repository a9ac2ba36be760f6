"""`socialguard run`: the proxy, embedded mitmproxy with the socialguard addon."""

from __future__ import annotations

import typer


def run() -> None:
    """Not yet implemented."""
    raise typer.Exit(3)
