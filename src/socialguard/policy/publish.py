"""Publishing a rules version: what it holds, what changed against the one in force, and approvals.

A rules file is edited in place by people and editors; a half-written or truncated file is often
valid YAML (cut at a line boundary after an allow rule it loads, and opens the filter). Two facts
tell a complete version from a cut one, and this module computes them:

- its **summary**: the rules in force, the rules switched off, the number of `tests:`, and each
  category's size. A cut file loses its tail, and the tail is where `tests:` live; a cut list loses
  domains. So a version that *loses* anything against the one in force is held, never taken
  silently;
- its **digest**: the SHA-256 of every source file's bytes (the rules file, its includes, lists and
  inventories, tests included), which an administrator's `socialguard rules apply` approves. A held
  version whose digest was approved is taken; a later byte changes the digest and needs approving
  again.

The proxy records the summary of what it runs in the state directory (`rules-in-force.json`), so
`rules apply` can show what a change adds, removes and switches off against what is really in force,
and a restart can tell a shrunken file from the one it ran. Times are passed in; nothing here reads
the clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from socialguard.errors import SocialGuardError

__all__ = [
    "APPROVED_FILE",
    "IN_FORCE_FILE",
    "PolicyChange",
    "PolicySummary",
    "RulesHeld",
    "approve",
    "approved_digest",
    "compare",
    "content_digest",
    "read_in_force",
    "summarize",
    "write_in_force",
]

IN_FORCE_FILE = "rules-in-force.json"
APPROVED_FILE = "rules-approved.json"


class RulesHeld(SocialGuardError):
    """A valid rules version that loses rules, tests or listed domains, and nobody approved it."""

    def __init__(self, change: PolicyChange) -> None:
        self.change = change
        super().__init__(
            "held, not loaded: it "
            + "; ".join(change.losses())
            + " (a truncated or half-written file looks like this; if meant, publish it with "
            "`socialguard rules apply`)"
        )


@dataclass(frozen=True, slots=True)
class PolicySummary:
    """What a rules version holds, in the terms a change is judged by."""

    rules_file: str
    version: str
    digest: str
    rules: tuple[str, ...]  # ids of the rules in force, in order
    disabled: tuple[str, ...]  # ids switched off (`enabled: false`)
    tests: int
    categories: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # (domains, networks)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules_file": self.rules_file,
            "version": self.version,
            "digest": self.digest,
            "rules": list(self.rules),
            "disabled": list(self.disabled),
            "tests": self.tests,
            "categories": {k: list(v) for k, v in sorted(self.categories.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicySummary:
        return cls(
            rules_file=str(data["rules_file"]),
            version=str(data["version"]),
            digest=str(data["digest"]),
            rules=tuple(str(r) for r in data["rules"]),
            disabled=tuple(str(r) for r in data["disabled"]),
            tests=int(data["tests"]),
            categories={
                str(k): (int(v[0]), int(v[1])) for k, v in dict(data["categories"]).items()
            },
        )


def content_digest(files: Sequence[Path]) -> str:
    """SHA-256 over every source file's bytes; the first is the rules file, the rest are named
    relative to its folder (so a copy published under another name keeps its digest)."""
    h = hashlib.sha256()
    base = files[0].parent if files else Path()
    for i, f in enumerate(files):
        name = "" if i == 0 else _relative(f, base)
        data = Path(f).read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def summarize(policy: Any, rules_file: Path, digest: str) -> PolicySummary:
    """The summary of a compiled policy (socialguard.engine.CompiledPolicy)."""
    return PolicySummary(
        rules_file=str(Path(rules_file).resolve()),
        version=str(policy.version),
        digest=digest,
        rules=tuple(r.id for r in policy.rules),
        disabled=tuple(policy.disabled_rules),
        tests=len(policy.tests),
        categories={
            name: (int(c.domain_count), int(c.network_count))
            for name, c in policy.categories.items()
        },
    )


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What a new version changes against the old: additions are taken freely, losses are not."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    switched_off: tuple[str, ...] = ()
    switched_on: tuple[str, ...] = ()
    tests_before: int = 0
    tests_after: int = 0
    categories_removed: tuple[str, ...] = ()
    categories_shrunk: tuple[tuple[str, int, int], ...] = ()  # name, domains before, after

    def losses(self) -> list[str]:
        """Each way the new version holds less than the old, in words; empty if none."""
        out: list[str] = []
        if self.removed:
            out.append("removes rules " + ", ".join(self.removed))
        if self.switched_off:
            out.append("switches off rules " + ", ".join(self.switched_off))
        if self.tests_after < self.tests_before:
            out.append(f"has {self.tests_after} tests where {self.tests_before} were in force")
        if self.categories_removed:
            out.append("removes categories " + ", ".join(self.categories_removed))
        for name, before, after in self.categories_shrunk:
            out.append(f"shrinks category {name} from {before} to {after} domains/networks")
        return out

    def describe(self) -> list[str]:
        """Every change, one line each (`rules apply` prints these)."""
        lines = [f"+ rule {r}" for r in self.added]
        lines += [f"- rule {r}" for r in self.removed]
        lines += [f"- rule {r} switched off" for r in self.switched_off]
        lines += [f"+ rule {r} switched on" for r in self.switched_on]
        if self.tests_after != self.tests_before:
            lines.append(f"  tests {self.tests_before} -> {self.tests_after}")
        lines += [f"- category {c}" for c in self.categories_removed]
        lines += [
            f"- category {n}: {b} -> {a} domains/networks" for n, b, a in self.categories_shrunk
        ]
        return lines


def compare(old: PolicySummary, new: PolicySummary) -> PolicyChange:
    old_all, new_all = {*old.rules, *old.disabled}, {*new.rules, *new.disabled}
    new_off = set(new.disabled)
    shrunk = tuple(
        (name, sum(before), sum(new.categories[name]))
        for name, before in sorted(old.categories.items())
        if name in new.categories and sum(new.categories[name]) < sum(before)
    )
    return PolicyChange(
        added=tuple(r for r in (*new.rules, *new.disabled) if r not in old_all),
        removed=tuple(r for r in (*old.rules, *old.disabled) if r not in new_all),
        switched_off=tuple(r for r in old.rules if r in new_off),
        switched_on=tuple(r for r in old.disabled if r in set(new.rules)),
        tests_before=old.tests,
        tests_after=new.tests,
        categories_removed=tuple(sorted(set(old.categories) - set(new.categories))),
        categories_shrunk=shrunk,
    )


# -- records in the state directory ---------------------------------------------------------------


def write_in_force(state: Path, summary: PolicySummary, at: datetime) -> None:
    """Record the version the proxy now runs (atomically: a reader sees the old or the new)."""
    _write_json(Path(state) / IN_FORCE_FILE, {**summary.to_json(), "since": at.isoformat()})


def read_in_force(state: Path) -> PolicySummary | None:
    """The version last recorded in force there, or None (no record, or unreadable)."""
    data = _read_json(Path(state) / IN_FORCE_FILE)
    if data is None:
        return None
    try:
        return PolicySummary.from_json(data)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def approve(state: Path, summary: PolicySummary, by: str, at: datetime) -> Path:
    """Approve this exact version (by digest) for the proxies using `state`; returns the file."""
    path = Path(state) / APPROVED_FILE
    _write_json(
        path,
        {"digest": summary.digest, "version": summary.version, "by": by, "at": at.isoformat()},
    )
    return path


def approved_digest(state: Path | None) -> str | None:
    if state is None:
        return None
    data = _read_json(Path(state) / APPROVED_FILE)
    digest = data.get("digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)  # the state directory's rule (socialguard.fsmode): nothing for others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
