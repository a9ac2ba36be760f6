"""`socialguard rules fingerprint`: SHA-256 digests of district files, for upload rules."""

from __future__ import annotations

import typer


def fingerprint() -> None:
    """Not yet implemented."""
    raise typer.Exit(3)
