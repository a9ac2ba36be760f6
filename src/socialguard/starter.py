"""The starter rules directory: the shipped rules, laid out where an installation can edit them.

A checkout runs on its `rules/` directory; an installed wheel has none, so `socialguard run` outside
a checkout had nothing to load. The wheel carries the same files as package data
(`socialguard/starter_rules`, a link to `rules/` in the source tree), and `socialguard init` copies
them out: the district policy, the demo rules, the domain lists and the fingerprint file.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from socialguard.errors import SocialGuardError

PACKAGE_DIR = "starter_rules"


class StarterError(SocialGuardError):
    """The starter rules cannot be laid out (files in the way, or the package carries none)."""


def starter_files() -> dict[PurePosixPath, Traversable]:
    """Every shipped rules file, by its path relative to the rules directory."""
    root = files("socialguard") / PACKAGE_DIR
    out: dict[PurePosixPath, Traversable] = {}

    def walk(node: Traversable, rel: PurePosixPath) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, rel / child.name)
            elif child.name.endswith((".yaml", ".txt")):
                out[rel / child.name] = child

    if root.is_dir():
        walk(root, PurePosixPath())
    if PurePosixPath("policy.yaml") not in out:
        raise StarterError("this installation of socialguard carries no starter rules")
    return dict(sorted(out.items()))


def lay_out(directory: Path, *, force: bool = False) -> list[Path]:
    """Writes the starter rules into `directory` and returns the files written.

    Refuses, writing nothing, when any of them already exists and `force` is not set: rules are
    the district's own edits, never overwritten by accident.
    """
    shipped = starter_files()
    targets = {directory.joinpath(*rel.parts): source for rel, source in shipped.items()}
    if directory.exists() and not directory.is_dir():
        raise StarterError(f"{directory} exists and is not a directory")
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        names = ", ".join(str(t) for t in existing[:3]) + (" …" if len(existing) > 3 else "")
        raise StarterError(f"{names} already exist; pass --force to overwrite")
    for target, source in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return list(targets)
