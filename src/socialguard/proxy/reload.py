"""Loading the rules for the proxy, and watching them for changes while it runs.

A rules file is put in force only if it loads, validates, and passes its own `tests:` — a district
that edits its rules must not open a hole by accident. Loading happens on the watcher's thread,
never on mitmproxy's event loop (compiling a million-domain list takes seconds); the finished
`LoadedPolicy` is swapped in with one reference assignment, so every hook sees either the old
policy or the new one, never a mixture, and a request in flight finishes on the policy it started
with. A file that fails keeps the previous policy in force and logs `rules_rejected` with every
error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from socialguard.errors import PolicyError, SocialGuardError

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


def load_checked(path: Path) -> LoadedPolicy:
    """Load, validate and self-test the rules at `path`; raise PolicyError or PolicyTestsFailed."""
    from socialguard.policy import load_policy, run_policy_tests

    policy = load_policy(path)
    stamps = stamp_files(tuple(policy.source_files))
    failures = [r.describe() for r in run_policy_tests(policy) if not r.passed]
    if failures:
        raise PolicyTestsFailed(failures)
    htpasswd = _load_htpasswd(policy)
    return LoadedPolicy(policy=policy, htpasswd=htpasswd, stamps=stamps)


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
    return [f"{type(exc).__name__}: {exc}"]


class RulesWatcher:
    """Polls the rules file and its includes; loads a changed set on its own thread, hands it over.

    `on_loaded(LoadedPolicy)` runs on the watcher thread after a good load, `on_rejected(errors)`
    after a bad one. Each distinct version of the files is tried once, so a broken file is logged
    once, and the next save is picked up by the next poll.
    """

    def __init__(
        self,
        path: Path,
        current: LoadedPolicy,
        on_loaded: Callable[[LoadedPolicy], None],
        on_rejected: Callable[[list[str]], None],
        interval_s: float = 0.5,
    ) -> None:
        self._path = path
        self._watched = current.stamps
        self._tried = current.stamps
        self._on_loaded = on_loaded
        self._on_rejected = on_rejected
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="socialguard-rules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def poll_once(self) -> None:
        """Check the files once; load and hand over if they changed since the last attempt."""
        # The names as strings: this runs several times a second for the life of the proxy, and
        # building Path objects was most of its cost.
        now = stamp_files(tuple(s[0] for s in self._watched))
        if now == self._tried:
            return
        self._tried = now
        try:
            loaded = load_checked(self._path)
        except Exception as e:  # anything a broken file can cause; the old policy stays in force
            self._on_rejected(rejection_errors(e))
            return
        self._watched = loaded.stamps
        self._tried = loaded.stamps
        self._on_loaded(loaded)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.poll_once()
            except Exception as e:  # the watcher must outlive any surprise
                log.error("rules_watch_failed", error=str(e))
