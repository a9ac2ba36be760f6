"""What every command shares: exit codes, error translation, option bundles.

Exit codes scripts can rely on:
  0  success (the answer is yes: valid, intact, allowed, done)
  1  the check ran and the answer is no (invalid rules, failing policy tests, broken log chain)
  2  bad input or usage (unknown option, unknown group, bad duration, missing file)
  3  an unexpected internal error
  4  the system refused (a port in use, a full or read-only disk, permissions): the same command
     works once that is fixed
  5  refused by the acting administrator's role (the rules file's `roles:`); the attempt is
     recorded in the decision log as an `admin_refused` event
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from socialguard.errors import RoleRefused, SocialGuardError
from socialguard.refusals import environment_refused

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_ENVIRONMENT = 4
EXIT_REFUSED = 5


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a SocialGuardError into a clean message and exit code 2 (no traceback); 4 when the
    system refused (a full or read-only disk, permissions)."""
    try:
        yield
    except RoleRefused as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_REFUSED) from e
    except SocialGuardError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT if environment_refused(e) else EXIT_USAGE) from e


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
CheckpointDirOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint-dir",
        help="Signed checkpoints directory (env SOCIALGUARD_CHECKPOINT_DIR; "
        "default <state>/checkpoints).",
    ),
]
AuditKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--audit-key",
        help="Checkpoint signing key, private (env SOCIALGUARD_AUDIT_KEY; "
        "default <state>/audit-signing.key).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
