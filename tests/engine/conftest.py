"""Engine test fixtures: a policy written to tmp_path and loaded by the real loader."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from socialguard.engine import CompiledPolicy
from socialguard.policy import load_policy

DENVER = ZoneInfo("America/Denver")
# Tuesday 2026-12-01 is a school day; 10:00 is in school hours, 18:00 is not.
SCHOOL_TIME = datetime(2026, 12, 1, 10, 0, tzinfo=DENVER)
EVENING = datetime(2026, 12, 1, 18, 0, tzinfo=DENVER)

BASE = """
district:
  name: Test District
  timezone: America/Denver
schedules:
  school-hours:
    weekly:
      mon-fri: ["07:30-16:00"]
groups:
  staff:
    networks: [10.20.0.0/16, "2001:db8:20::/48"]
  admins:
    networks: [10.10.5.0/24]
    users: [principal-jones]
  all-staff:
    include: [staff, admins]
categories:
  social:
    domains: [facebook.com, instagram.com]
    networks: [157.240.0.0/16]
"""


@pytest.fixture
def engine_base() -> str:
    """The base policy text, for tests that need to change a section of it."""
    return BASE


@pytest.fixture
def make_policy(tmp_path: Path) -> Callable[..., CompiledPolicy]:
    """Write BASE + the given extra YAML (and files) and load it with load_policy."""

    def make(
        extra: str, *, base: str = BASE, files: dict[str, str] | None = None
    ) -> CompiledPolicy:
        for name, text in (files or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
        path = tmp_path / "policy.yaml"
        path.write_text(textwrap.dedent(base) + textwrap.dedent(extra), encoding="utf-8")
        return load_policy(path)

    return make
