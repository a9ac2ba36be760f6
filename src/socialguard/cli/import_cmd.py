"""`socialguard rules import`: bring a UT1/hosts/plain domain list into the rules' lists/.

The list is parsed by the same reader the policy loader uses (`socialguard.policy.lists`), so
what the import keeps is exactly what the proxy will match. The output is one canonical domain a
line under a header naming the source, so a later `categories.*.lists` include reads it back
unchanged. Nothing is written when the list yields no domain, and an existing list is replaced
only with --force, atomically (a crash mid-write leaves the old file intact).
"""

from __future__ import annotations

import os
import re
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from socialguard import paths
from socialguard.cli.common import RulesOption, fail

INVALID_SHOWN = 20
_CATEGORY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_UT1_NOTICE = (
    "# Source: UT1 blacklists (Universite Toulouse Capitole), CC BY-SA 4.0 by their maintainers.\n"
    "# Keep this notice with any copy; changes to this list are shared under the same licence.\n"
)


class ImportFormat(StrEnum):
    """The list formats `rules import` reads (auto sniffs hosts files and UT1 `domains` files)."""

    AUTO = "auto"
    PLAIN = "plain"
    HOSTS = "hosts"
    UT1 = "ut1"


def import_list(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    fmt: Annotated[
        ImportFormat,
        typer.Argument(metavar="FORMAT", help="plain, hosts, ut1, or auto (sniff the file)."),
    ],
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The list to import (gzip-compressed is fine).")
    ],
    category: Annotated[
        str,
        typer.Option(
            "--category",
            help="Category the list is for; the output is <out>/<category>.txt.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Directory to write the list into; default: lists/ beside the rules file.",
        ),
    ] = None,
    rules: RulesOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing list of that name.")
    ] = False,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="A service (facebook, ...) the list's domains belong to: prints the rules-file "
            "lines that attach it, so a grant or emergency for the service opens them too.",
        ),
    ] = None,
) -> None:
    """Import a domain list (UT1 `domains`, hosts file, or one domain a line) into lists/ beside
    the rules file (--rules, $SOCIALGUARD_RULES or rules/policy.yaml), where its `lists:` entries
    are read from, wherever the command is run.

    Every entry is normalised as the proxy matches hosts (lower case, punycode, no trailing dot);
    duplicates and unusable lines are dropped and counted, and each unusable line is reported
    with its line number (the first 20). Refuses to replace an existing list without --force.
    Then add the file to a category's `lists:` in the rules file, and with --service to that
    service's `lists:` (the lines to add are printed).

    Example:

        socialguard rules import ut1 blacklists/social_networks/domains --category social-ut1
    """
    from socialguard.policy.lists import read_domain_list

    if service is not None and not _CATEGORY_NAME.fullmatch(service):
        raise fail(f"--service {service!r}: a service id such as facebook (rules/services.yaml)")
    if not _CATEGORY_NAME.fullmatch(category):
        raise fail(
            f"--category {category!r}: use lower-case letters, digits, '-' and '_' "
            "(it names the output file)"
        )
    target = (out or paths.rules_path(rules).parent / "lists") / f"{category}.txt"
    if target.exists() and not force:
        raise fail(f"{target} exists; pass --force to replace it")
    try:
        result = read_domain_list(file, fmt.value)
    except FileNotFoundError:
        raise fail(f"{file}: no such file") from None
    except (OSError, EOFError, ValueError) as e:
        raise fail(f"{file}: cannot read the list: {e}") from None

    for lineno, text, why in result.invalid[:INVALID_SHOWN]:
        typer.echo(f"{file}:{lineno}: {why}: {text[:80]}", err=True)
    hidden = len(result.invalid) - INVALID_SHOWN
    if hidden > 0:
        typer.echo(f"... and {hidden} more invalid lines", err=True)
    if not result.domains:
        raise fail(f"{file}: no usable domain in {result.lines} lines; nothing written")

    header = _header(file, result.format, category, len(result.domains))
    _write_atomically(target, header, result.domains)
    typer.echo(
        f"imported {file} ({result.format}) into {target}: kept {len(result.domains)} domains, "
        f"dropped {result.duplicates} duplicates and {len(result.invalid)} invalid lines"
        + (f", ignored {result.ignored} localhost entries" if result.ignored else "")
    )
    if service is not None:
        typer.echo(
            f"attach it to service {service!r} in the rules file (a path relative to it):\n"
            f"services:\n  {service}: {{lists: [{target.parent.name}/{target.name}]}}"
        )


def _header(source: Path, fmt: str, category: str, count: int) -> str:
    """The comment block naming where the list came from (and UT1's licence terms)."""
    lines = (
        f"# socialguard domain list for category '{category}': {count} domains.\n"
        f"# Imported from {source.name} ({fmt} format) by `socialguard rules import`.\n"
    )
    return lines + (_UT1_NOTICE if fmt == "ut1" else "")


def _write_atomically(target: Path, header: str, domains: list[str]) -> None:
    """Write beside the target and rename over it, so a reader never sees half a list."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise fail(f"{target.parent}: cannot write there: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(header)
            f.write("\n".join(domains))
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise fail(f"{target}: cannot write: {e.strerror}") from None
