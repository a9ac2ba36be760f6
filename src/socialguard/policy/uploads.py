"""The `uploads:` section of the rules file, and compiling it into the inspector's rules.

```yaml
uploads:
  max_body: 10MB              # a request body larger than this counts as an upload
  inspect_limit: 64MB         # bytes of a body inspected for markers and fingerprints
  markers:                    # searched in text bodies (forms, JSON, text parts)
    - {name: confidential, pattern: "CONFIDENTIAL", ignore_case: true}
    - {name: student-id, pattern: "\\bS\\d{7}\\b"}
  fingerprints: [fingerprints.txt]   # from `socialguard rules fingerprint DIR`
```

Which requests are inspected, and what is done about a finding, is the rules' business
(`what: {uploads: true}`); this section only says what counts as an upload and what to look for.
Reads only the fingerprint files it names: no network, no clock.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialguard.engine.uploads import (
    DEFAULT_INSPECT_LIMIT,
    DEFAULT_MARKER_WINDOW,
    Marker,
    UploadRules,
)
from socialguard.errors import PolicyError, Problem

__all__ = [
    "MarkerSpec",
    "UploadsSpec",
    "compile_uploads",
    "parse_size",
    "read_fingerprints",
]

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*\Z", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def parse_size(value: str | int) -> int:
    """`10MB`, `512KB`, `1.5GB`, `1048576` → bytes (KB/MB/GB are powers of 1024)."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value} must not be negative")
        return value
    m = _SIZE.match(value)
    if m is None:
        raise ValueError(f"size {value!r} must look like 10MB, 512KB, 1GB or a number of bytes")
    unit = (m.group(2) or "").lower()[:1]
    return int(float(m.group(1)) * _UNITS[unit])


class MarkerSpec(_Spec):
    """A named pattern searched in text bodies; only the name is ever logged."""

    name: str
    pattern: str
    ignore_case: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"marker name {v!r} may hold only letters, digits, '-', '_', '.'")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if not v:
            raise ValueError("empty pattern would match every body")
        try:
            compiled = re.compile(v.encode("utf-8"))
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        if compiled.match(b""):
            raise ValueError(f"pattern {v!r} matches empty text, so it would match every body")
        return v

    def compile(self) -> Marker:
        flags = re.IGNORECASE if self.ignore_case else 0
        return Marker(self.name, re.compile(self.pattern.encode("utf-8"), flags))


class UploadsSpec(_Spec):
    """`uploads:` in the rules file (all optional)."""

    max_body: str | int | None = None
    inspect_limit: str | int = DEFAULT_INSPECT_LIMIT
    markers: list[MarkerSpec] = Field(default_factory=list)
    fingerprints: list[str] = Field(default_factory=list)
    marker_window: int = Field(default=DEFAULT_MARKER_WINDOW, ge=16, le=65536)

    @field_validator("max_body", "inspect_limit")
    @classmethod
    def _size(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_size(v)
        return v

    @field_validator("markers")
    @classmethod
    def _unique(cls, v: list[MarkerSpec]) -> list[MarkerSpec]:
        names = [m.name for m in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"marker names must be unique: {', '.join(dupes)}")
        return v


def read_fingerprints(path: Path, shown: str | None = None) -> dict[str, str]:
    """Read a fingerprint list: `<sha256 hex>  <label>` a line (sha256sum's format), `#` comments.

    Returns digest → label (the first label of a digest listed twice). Raises PolicyError naming
    each bad line as file:line; OSError when the file cannot be read.
    """
    where = shown or str(path)
    out: dict[str, str] = {}
    problems: list[Problem] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            digest, _, label = text.partition(" ")
            digest = digest.lower()
            label = label.strip().removeprefix("*")  # sha256sum marks binary mode with '*'
            if not _DIGEST.match(digest):
                problems.append(
                    Problem(where, lineno, "fingerprints", "expected a 64-digit SHA-256 in hex")
                )
                continue
            out.setdefault(digest, label or digest[:12])
    if problems:
        raise PolicyError(problems)
    return out


def compile_uploads(spec: UploadsSpec | None, base_dir: Path, shown_base: str = "") -> UploadRules:
    """The inspector's rules from the section; fingerprint files are relative to the rules file.

    Raises PolicyError (file:line for a bad fingerprint line, the field for a missing file).
    """
    if spec is None:
        return UploadRules()
    fingerprints: dict[str, str] = {}
    problems: list[Problem] = []
    for i, rel in enumerate(spec.fingerprints):
        path = base_dir / rel
        shown = str(Path(shown_base) / rel) if shown_base else str(path)
        try:
            for digest, label in read_fingerprints(path, shown).items():
                fingerprints.setdefault(digest, label)
        except PolicyError as e:
            problems.extend(e.problems)
        except OSError as e:
            problems.append(
                Problem(shown, None, f"uploads.fingerprints[{i}]", f"cannot read: {e.strerror}")
            )
    if problems:
        raise PolicyError(problems)
    return UploadRules(
        max_body=None if spec.max_body is None else parse_size(spec.max_body),
        inspect_limit=parse_size(spec.inspect_limit),
        markers=tuple(m.compile() for m in spec.markers),
        fingerprints=MappingProxyType(fingerprints),
        marker_window=spec.marker_window,
    )
