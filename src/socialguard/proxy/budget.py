"""One memory budget for every request body the proxy holds for upload inspection.

A held body stays in mitmproxy's memory until it is inspected (up to `uploads.HOLD_LIMIT` each).
Each is small, but together they are not: forty 16 MiB uploads at once would be 640 MiB. So every
hold first reserves its declared length here; a hold that does not fit is not made, and the request
is decided as an upload at its headers (fail closed, recorded as `upload: [held_memory_full]`).
A reservation is returned when the body has been inspected, when the flow fails, or at the latest
when the flow object goes away.
"""

from __future__ import annotations

import threading
import weakref

from mitmproxy.utils import human

__all__ = ["DEFAULT_UPLOAD_MEMORY", "Reservation", "UploadBudget", "parse_upload_memory"]

DEFAULT_UPLOAD_MEMORY = "64m"
MIN_UPLOAD_MEMORY = 1024 * 1024


def parse_upload_memory(raw: str) -> int:
    """The `socialguard_upload_memory` option: a size (`64m`, `1g`), at least 1 MiB."""
    try:
        size = human.parse_size(raw.strip() or None)
    except ValueError as e:
        raise ValueError(f"socialguard_upload_memory: {raw!r} is not a size ({e})") from None
    if size is None or size < MIN_UPLOAD_MEMORY:
        raise ValueError(f"socialguard_upload_memory: {raw!r} is under the minimum of 1m")
    return size


class Reservation:
    """Bytes reserved in a budget for one held body; `release` is idempotent."""

    __slots__ = ("__weakref__", "_budget", "size")

    def __init__(self, budget: UploadBudget, size: int) -> None:
        self._budget: UploadBudget | None = budget
        self.size = size

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.give_back(self.size)


class UploadBudget:
    """Bytes all held bodies may take together (`limit`); `held` is what is reserved now."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()  # releases may come from a finalizer in any thread

    def reserve(self, size: int, owner: object | None = None) -> Reservation | None:
        """Reserve `size` bytes, or None when they do not fit. With `owner`, the reservation is
        also returned when `owner` is garbage-collected (a backstop for a missed release)."""
        with self._lock:
            if self.held + size > self.limit:
                return None
            self.held += size
        reservation = Reservation(self, size)
        if owner is not None:
            weakref.finalize(owner, reservation.release)
        return reservation

    def give_back(self, size: int) -> None:
        with self._lock:
            self.held = max(0, self.held - size)
