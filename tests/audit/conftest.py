"""Fixtures for the decision log tests (helpers live in audit_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import DENVER, Clock

from socialguard.audit import AuditLog


@pytest.fixture
def clock() -> Clock:
    # 10:00 in Denver on a school day
    return Clock(datetime(2026, 11, 24, 17, 0, tzinfo=UTC))


@pytest.fixture
def open_log(tmp_path: Path, clock: Clock) -> Iterator[Callable[..., AuditLog]]:
    """Open AuditLogs under tmp_path (closed at the end if the test did not)."""
    opened: list[AuditLog] = []

    def _open(node: str = "n1-w0", **kw: Any) -> AuditLog:
        kw.setdefault("clock", clock)
        kw.setdefault("checkpoint_dir", tmp_path / "checkpoints")
        kw.setdefault("timezone", DENVER)
        log = AuditLog(tmp_path / "log", node, **kw)
        opened.append(log)
        return log

    yield _open
    for log in opened:
        log.close()
