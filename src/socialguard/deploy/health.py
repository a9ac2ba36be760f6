"""Ready-made `/healthz` checks for the addon to hand to `AdminServer`.

Each returns a `HealthCheck` (a callable answering True when healthy); they run on the admin
server's thread, never on the proxy's event loop, so they may touch the disk and the store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .metrics import HealthCheck

__all__ = ["MIN_FREE_BYTES", "log_writable", "policy_loaded", "store_reachable"]

# Below this the decision log is about to stop being written: report it before it happens.
MIN_FREE_BYTES = 64 * 1024 * 1024


class _CountsChanges(Protocol):
    def change_counter(self) -> int: ...


def policy_loaded(current: Callable[[], object | None]) -> HealthCheck:
    """Healthy while `current()` returns a policy (not None)."""
    return lambda: current() is not None


def store_reachable(store: _CountsChanges) -> HealthCheck:
    """Healthy while the overrides store answers its cheapest query (the change counter).

    The SQLite store opens one connection per thread, so calling it from the admin thread is safe.
    """

    def check() -> bool:
        store.change_counter()  # raises when the store is unreachable; run_checks reports it
        return True

    return check


def log_writable(log_dir: Path, min_free_bytes: int = MIN_FREE_BYTES) -> HealthCheck:
    """Healthy while the decision log directory exists, is writable, and has room left."""

    def check() -> bool:
        if not log_dir.is_dir() or not os.access(log_dir, os.W_OK | os.X_OK):
            return False
        return shutil.disk_usage(log_dir).free >= min_free_bytes

    return check
