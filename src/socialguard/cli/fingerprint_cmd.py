"""`socialguard rules fingerprint`: SHA-256 digests of district files, for upload rules.

The district keeps its logos, photo sets and documents in a folder; this command lists each
file's SHA-256 with its path relative to that folder, in `sha256sum`'s format, so the list can be
checked with standard tools (`sha256sum -c`) and named in the rules file's
`uploads.fingerprints`. The proxy then recognises those files when someone uploads them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from socialguard.cli.common import fail

_READ_SIZE = 1 << 20


def fingerprint(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of district files (walked recursively).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the list to this file instead of standard output."),
    ] = None,
) -> None:
    """List the SHA-256 of every file under DIR, one `sha256  relative/path` a line.

    Name the output in the rules file (`uploads: {fingerprints: [fingerprints.txt]}`) to have
    uploads of these files recognised. Hidden files and folders (names starting with '.') and
    symbolic links are skipped; the list is sorted by path so that it diffs cleanly.

    Example:

        socialguard rules fingerprint /srv/district/logos --out rules/fingerprints.txt
    """
    if not directory.is_dir():
        raise fail(f"{directory}: not a directory")
    skip = out.resolve() if out is not None else None
    lines = []
    for path in _files(directory):
        if skip is not None and path.resolve() == skip:
            continue
        try:
            digest = _sha256(path)
        except OSError as e:
            raise fail(f"{path}: cannot read: {e.strerror}") from None
        lines.append(f"{digest}  {path.relative_to(directory).as_posix()}\n")
    if not lines:
        raise fail(f"{directory}: no files to fingerprint")
    if out is None:
        typer.echo("".join(lines), nl=False)
        return
    _write_atomically(out, "".join(lines))
    typer.echo(f"fingerprinted {len(lines)} files under {directory} into {out}", err=True)


def _files(directory: Path) -> list[Path]:
    """Regular files under `directory`, sorted, skipping hidden names and symlinks."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_READ_SIZE):
            h.update(chunk)
    return h.hexdigest()


def _write_atomically(target: Path, text: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise fail(f"{target.parent}: cannot write there: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise fail(f"{target}: cannot write: {e.strerror}") from None
