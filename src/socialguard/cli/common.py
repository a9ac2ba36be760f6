"""What every command shares: exit codes, error translation, option bundles.

Exit codes scripts can rely on:
  0  success (the answer is yes: valid, intact, allowed, done)
  1  the check ran and the answer is no (invalid rules, failing policy tests, broken log chain)
  2  bad input or usage (unknown option, unknown group, bad duration, missing file)
  3  an unexpected internal error
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from socialguard.errors import SocialGuardError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a SocialGuardError into a clean message and exit code 2 (no traceback)."""
    try:
        yield
    except SocialGuardError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from e


def handles_errors[F: Callable[..., Any]](func: F) -> F:
    """Decorator form of domain_errors for a command function."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with domain_errors():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def echo_err(message: str) -> None:
    print(message, file=sys.stderr)


# Shared option bundles, defined once.
RulesOption = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        metavar="PATH",
        help="Rules file (env SOCIALGUARD_RULES; default rules/policy.yaml).",
    ),
]
StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state", metavar="DIR", help="State directory (env SOCIALGUARD_STATE; default var/)."
    ),
]
LogDirOption = Annotated[
    Path | None,
    typer.Option(
        "--log-dir",
        metavar="DIR",
        help="Decision log directory (env SOCIALGUARD_LOG_DIR; default <state>/log).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
