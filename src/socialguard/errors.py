"""One base error for everything socialguard raises on purpose.

Library code raises these; only the edges translate them: the addon into mitmproxy's OptionsError,
the CLI into a message on stderr and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass


class SocialGuardError(Exception):
    """Base class: an expected failure with a message fit for the person who caused it."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One error or warning in a rules file, located as precisely as the loader could."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class PolicyError(SocialGuardError):
    """The rules file (or one of its includes) is invalid; `problems` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StoreError(SocialGuardError):
    """The overrides store refused a change (unknown group, bad duration, end in the past, ...)."""


class AuditError(SocialGuardError):
    """The decision log could not be written or read as asked."""


class ConfigError(SocialGuardError):
    """A command-line or proxy option is invalid."""


class RoleRefused(SocialGuardError):
    """The acting administrator's role (the rules file's `roles:`) does not allow this change."""
