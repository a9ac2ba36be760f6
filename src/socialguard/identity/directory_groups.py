"""The directory groups of people another source named (RADIUS), looked up off the request path.

A RADIUS binding carries what the Wi-Fi's RADIUS server said (Class / Filter-Id), which is often
nothing more than "staff-wifi". With a directory configured, the person's directory groups
(nested groups resolved) count too, mapped through `identity.groups` like any source group.

The request path never waits on LDAP: it reads the bindings snapshot, and the snapshot carries
the groups. This worker looks people up on its own thread and hands each answer to `on_groups`,
which publishes new bindings; until the first answer for a person arrives (milliseconds on a
working directory) their binding has the RADIUS groups only. Answers are cached for
`group_cache` and looked up again once stale while the person is still bound. When the
directory fails, the last answer is kept (a directory restart does not take everyone's groups
away) and tried again after `_RETRY_S`; the failure is counted by the Directory and logged.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .directory import Directory, DirectoryError

__all__ = ["DirectoryGroups"]

log = structlog.get_logger(__name__)

_RETRY_S = 30.0
_MAX_PENDING = 50_000  # people waiting for a first lookup; more is a flood, not a school


@dataclass(frozen=True, slots=True)
class _Known:
    groups: frozenset[str]
    fetched: float  # when the answer came (or, after a failure, when to count staleness from)


class DirectoryGroups:
    """Looks people up in the directory on a thread of its own; `groups(user)` reads the cache."""

    def __init__(
        self,
        directory: Directory,
        ttl_s: float,
        on_groups: Callable[[str, frozenset[str]], None],
        still_bound: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.ttl_s = ttl_s
        self._on_groups = on_groups
        self._still_bound = still_bound
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def groups(self, user: str) -> frozenset[str] | None:
        """The person's directory groups as last looked up (None: not yet); asks for a lookup
        when there is none or it is stale. Cheap: a dict read, and a queue put at most once per
        person until answered."""
        with self._lock:
            known = self._known.get(user)
            stale = known is None or self._clock() - known.fetched >= self.ttl_s
            if stale and user not in self._pending and len(self._pending) < _MAX_PENDING:
                self._pending.add(user)
                self._queue.put(user)
        return known.groups if known is not None else None

    def start(self) -> DirectoryGroups:
        self._thread = threading.Thread(
            target=self._run, name="socialguard-directory-groups", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=self.directory.spec.timeout * 4 + 5)
            self._thread = None

    # ----------------------------------------------------------------- the worker

    def _run(self) -> None:
        wait = min(self.ttl_s, 60.0)
        refreshed = self._clock()
        while not self._stopping.is_set():
            try:
                user = self._queue.get(timeout=wait)
            except queue.Empty:
                user = ""
            if user is None:
                return
            if user:
                self._look_up(user)
            if self._clock() - refreshed >= wait:  # also when lookups keep the queue busy
                refreshed = self._clock()
                self._refresh_stale()

    def _look_up(self, user: str) -> None:
        try:
            found = self.directory.lookup(user)
        except DirectoryError as e:
            # counted and logged by the Directory; keep the last answer, try again later
            with self._lock:
                self._pending.discard(user)
                known = self._known.get(user)
                if known is not None:
                    retry_from = self._clock() - self.ttl_s + _RETRY_S
                    self._known[user] = _Known(known.groups, retry_from)
            log.warning("directory_groups_unavailable", user=user, error=str(e))
            return
        except Exception as e:  # a bug must not end the worker: every later lookup would stop
            with self._lock:
                self._pending.discard(user)
            log.exception("directory_groups_failed", user=user, error=str(e))
            return
        groups = found.groups if found is not None else frozenset()
        with self._lock:
            self._pending.discard(user)
            old = self._known.get(user)
            self._known[user] = _Known(groups, self._clock())
        if old is None or old.groups != groups:
            self._on_groups(user, groups)

    def _refresh_stale(self) -> None:
        """Look again at the people still bound whose answer is stale; forget the others."""
        now = self._clock()
        with self._lock:
            users = [u for u, k in self._known.items() if now - k.fetched >= self.ttl_s]
        for user in users:
            if self._stopping.is_set():
                return
            if self._still_bound(user):
                self.groups(user)
            else:
                with self._lock:
                    self._known.pop(user, None)
