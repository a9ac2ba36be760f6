"""Loading the rules for the proxy, and watching them for changes while it runs.

A rules file is put in force only if it loads, validates, and passes its own `tests:` — a district
that edits its rules must not open a hole by accident. Loading happens on the watcher's thread,
never on mitmproxy's event loop (compiling a million-domain list takes seconds); the finished
`LoadedPolicy` is swapped in with one reference assignment, so every hook sees either the old
policy or the new one, never a mixture, and a request in flight finishes on the policy it started
with. A file that fails keeps the previous policy in force and logs `rules_rejected` with every
error.

Only whole versions run (issue 19). An editor writing in place, a copy cut short, a truncated list:
each is a moment when the file on disk is a *prefix* of the intended one, and a prefix cut at a line
boundary is often valid YAML whose remaining rules allow more than the whole. So a change is taken
only when (1) the files have stayed unchanged for `settle_s` (an in-progress write is still moving),
(2) they did not move while being loaded, (3) it loads, validates and passes its own `tests:`, and
(4) it loses nothing against the version in force — no rule removed or switched off, no test gone,
no category smaller (see policy/publish.py) — unless an administrator approved that exact version
with `socialguard rules apply`. At start-up the version last recorded in force in the state
directory is the baseline for (4). A held version is logged as `rules_rejected` naming what it
loses; the policy in force stays.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from socialguard.errors import PolicyError, SocialGuardError
from socialguard.policy.publish import (
    APPROVED_FILE,
    PolicySummary,
    RulesHeld,
    approved_digest,
    compare,
    content_digest,
    read_in_force,
    summarize,
    write_in_force,
)

log = structlog.get_logger(__name__)

FileStamp = tuple[str, int, int, int]  # path, mtime_ns, size, inode (-1s when missing)


class PolicyTestsFailed(SocialGuardError):
    """The rules file loaded but some of its own `tests:` do not hold."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__("policy tests failed:\n" + "\n".join(failures))


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A policy in force, with what came with it (the proxy-auth password file)."""

    policy: Any  # socialguard.policy.CompiledPolicy
    htpasswd: Any | None  # mitmproxy.utils.htpasswd.HtpasswdFile
    stamps: tuple[FileStamp, ...]
    summary: PolicySummary | None = None  # what it holds, to judge the next change against


def stamp_files(paths: tuple[Path | str, ...]) -> tuple[FileStamp, ...]:
    """What changed-or-not is judged by: mtime, size and inode (editors often replace the file)."""
    out: list[FileStamp] = []
    for p in paths:
        name = str(p)
        try:
            st = os.stat(name)
            out.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((name, -1, -1, -1))
    return tuple(out)


def load_checked(
    path: Path,
    *,
    baseline: PolicySummary | None = None,
    state: Path | None = None,
) -> LoadedPolicy:
    """Load, validate and self-test the rules at `path`; raise PolicyError, PolicyTestsFailed, or
    RulesHeld when it loses rules or tests against `baseline` (default: the version recorded in
    force in `state`) and `state` holds no approval of this exact version."""
    from socialguard.policy import load_policy, run_policy_tests

    policy = load_policy(path)
    stamps = stamp_files(tuple(policy.source_files))
    failures = [r.describe() for r in run_policy_tests(policy) if not r.passed]
    if failures:
        raise PolicyTestsFailed(failures)
    htpasswd = _load_htpasswd(policy)
    summary = summarize(policy, path, content_digest(list(policy.source_files)))
    if baseline is None and state is not None:
        baseline = read_in_force(state)
        if baseline is not None and baseline.rules_file != summary.rules_file:
            baseline = None  # another rules file ran last: nothing to compare with
    if baseline is not None and baseline.digest != summary.digest:
        change = compare(baseline, summary)
        if change.losses() and approved_digest(state) != summary.digest:
            raise RulesHeld(change)
    return LoadedPolicy(policy=policy, htpasswd=htpasswd, stamps=stamps, summary=summary)


def record_in_force(state: Path | None, loaded: LoadedPolicy, at: datetime) -> None:
    """Say in the state directory which version runs (for `rules apply` and the next start)."""
    if state is None or loaded.summary is None:
        return
    try:
        write_in_force(state, loaded.summary, at)
    except OSError as e:  # a read-only state directory must not stop the policy
        log.error("rules_record_failed", state=str(state), error=str(e))


def _load_htpasswd(policy: Any) -> Any | None:
    auth = getattr(policy, "auth", None)
    file = getattr(auth, "htpasswd", None) if auth is not None else None
    if not file:
        return None
    from mitmproxy.utils.htpasswd import HtpasswdFile

    try:
        return HtpasswdFile.from_file(Path(file))
    except (OSError, ValueError) as e:
        raise PolicyError([_problem(str(file), f"proxy auth htpasswd: {e}")]) from e


def _problem(file: str, message: str) -> Any:
    from socialguard.errors import Problem

    return Problem(file=file, line=None, field="auth.htpasswd", message=message)


def rejection_errors(exc: BaseException) -> list[str]:
    """The lines to log for a rejected file: every problem, or every failing test."""
    if isinstance(exc, PolicyError):
        return [str(p) for p in exc.problems]
    if isinstance(exc, PolicyTestsFailed):
        return exc.failures
    if isinstance(exc, RulesHeld):
        return [str(exc), *exc.change.describe()]
    return [f"{type(exc).__name__}: {exc}"]


def _same_content(a: LoadedPolicy, b: LoadedPolicy) -> bool:
    return a.summary is not None and b.summary is not None and a.summary.digest == b.summary.digest


class RulesWatcher:
    """Polls the rules file and its includes; loads a changed set on its own thread, hands it over.

    `on_loaded(LoadedPolicy)` runs on the watcher thread after a good load, `on_rejected(errors)`
    after a bad one. A change is tried once the files have been still for `settle_s`, and each
    distinct version of the files is tried once, so a broken file is logged once and the next save
    is picked up. The approval file in `state` is watched too, so `rules apply` takes effect
    without an edit. Intervals are measured on the monotonic clock: a wall-clock step neither
    hurries nor stalls a reload.
    """

    def __init__(
        self,
        path: Path,
        current: LoadedPolicy,
        on_loaded: Callable[[LoadedPolicy], None],
        on_rejected: Callable[[list[str]], None],
        interval_s: float = 0.5,
        *,
        settle_s: float = 0.5,
        state: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._path = path
        self._current = current
        self._state = state
        self._extra: tuple[str, ...] = (str(state / APPROVED_FILE),) if state is not None else ()
        self._watched = current.stamps
        self._tried = self._stamp()
        self._pending: tuple[FileStamp, ...] | None = None
        self._pending_since = 0.0
        self._urgent = False
        self._on_loaded = on_loaded
        self._on_rejected = on_rejected
        self._interval_s = interval_s
        self._settle_s = settle_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        record_in_force(self._state, self._current, self._clock())
        self._thread = threading.Thread(target=self._run, name="socialguard-rules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def check_now(self) -> None:
        """Judge the files as they are at the next poll, without waiting for them to settle, and
        even if this version was judged before (SIGHUP: the operator says the edit is complete).
        The loss guard still applies."""
        self._urgent = True

    def _stamp(self) -> tuple[FileStamp, ...]:
        # The names as strings: this runs several times a second for the life of the proxy, and
        # building Path objects was most of its cost.
        return stamp_files((*(s[0] for s in self._watched), *self._extra))

    def poll_once(self) -> None:
        """Check the files once; load and hand over a change that has settled and is whole."""
        now = self._stamp()
        if self._urgent:
            self._urgent = False
            self._try(now)
            return
        if now == self._tried:
            self._pending = None
            return
        if now != self._pending:  # still being written, or just written: wait until it settles
            self._pending, self._pending_since = now, time.monotonic()
            return
        if time.monotonic() - self._pending_since < self._settle_s:
            return
        self._try(now)

    def _try(self, now: tuple[FileStamp, ...]) -> None:
        try:
            loaded = load_checked(self._path, baseline=self._current.summary, state=self._state)
        except Exception as e:  # anything a broken file can cause; the old policy stays in force
            if self._stamp() != now:
                return  # it moved while being read: judge the next still version instead
            self._tried = now
            self._on_rejected(rejection_errors(e))
            return
        if self._stamp() != now:
            return  # it moved while being read: what was loaded may be a mixture
        if _same_content(loaded, self._current):
            # touched, saved unchanged, or only the approval moved: nothing to hand over
            self._watched = loaded.stamps
            self._tried = self._stamp()
            self._pending = None
            return
        self._current = loaded
        self._watched = loaded.stamps
        self._tried = self._stamp()
        self._pending = None
        record_in_force(self._state, loaded, self._clock())
        self._on_loaded(loaded)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.poll_once()
            except Exception as e:  # the watcher must outlive any surprise
                log.error("rules_watch_failed", error=str(e))
