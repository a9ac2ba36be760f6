"""A minimal domain-list reader, used only while `policy/lists.py` (the full reader) is absent.

Plain (one domain a line), hosts-file (`0.0.0.0 domain`) and UT1 `domains` files; `#` comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from socialguard.engine.hosts import is_ip_literal, normalise_host


@dataclass(frozen=True, slots=True)
class DomainListResult:
    domains: list[str]
    duplicates: int
    invalid: list[tuple[int, str, str]]
    format: str


def read_domain_list(path: Path, fmt: str = "auto") -> DomainListResult:
    names: list[str] = []
    invalid: list[tuple[int, str, str]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            fields = text.split()
            if len(fields) > 1 and is_ip_literal(fields[0]):
                fields = fields[1:]
            for name in fields:
                try:
                    host = normalise_host(name.removeprefix("*.").removeprefix("."))
                except ValueError as e:
                    invalid.append((number, line.strip(), str(e)))
                    continue
                if is_ip_literal(host) or host == "localhost":
                    continue
                names.append(host)
    unique = list(dict.fromkeys(names))
    return DomainListResult(unique, len(names) - len(unique), invalid, fmt)
