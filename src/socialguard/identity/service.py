"""The proxy's identity sources, and the bindings snapshot they keep current.

The rules file's `identity:` section says which sources run; a reload that changes a source's
configuration restarts that source. Each source runs on a thread of its own and reports changes
here; every change makes a new immutable `Bindings` snapshot, assigned in one reference store, so a
request sees the old bindings or the new ones, never half of a change, and the next request after a
change sees it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from socialguard.engine.identity import Binding, Bindings, IdentitySpec, lifetime_seconds

from .dhcp import LeaseWatcher
from .radius import Accounting, RadiusListener
from .store import BINDINGS_DB, BindingStore

__all__ = ["IdentityService", "read_secret"]

log = structlog.get_logger(__name__)


def read_secret(path: Path) -> bytes:
    """The RADIUS shared secret: the file's first line (a trailing newline is not part of it)."""
    text = path.read_bytes().splitlines()
    if not text or not text[0].strip():
        raise ValueError(f"RADIUS secret file {path} is empty")
    return text[0].strip()


class IdentityService:
    """Runs the configured sources; `bindings` is the snapshot a request looks the client up in."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.bindings: Bindings = Bindings.EMPTY
        self.active = False  # any source configured: the request path skips lookups otherwise
        self.radius: RadiusListener | None = None
        self.leases: LeaseWatcher | None = None
        self._store: BindingStore | None = None
        self._state: Path | None = None
        self._spec: IdentitySpec | None = None
        self._base: Path | None = None
        self._swap = threading.Lock()

    # ----------------------------------------------------------------- lookups (the hot path)

    def person(self, address: str) -> Binding | None:
        return self.bindings.person(address, self.clock())

    def lookup(self, address: str) -> tuple[Binding | None, Binding | None]:
        """The person and the DHCP lease on `address` now: what a kept-alive connection's
        principal rests on (the proxy re-resolves it when either changed)."""
        now = self.clock()
        b = self.bindings
        return b.person(address, now), b.lease(address, now)

    def lease_mac(self, address: str) -> str | None:
        lease = self.bindings.lease(address, self.clock())
        return lease.mac if lease is not None else None

    # ----------------------------------------------------------------- configuration

    def configure(self, spec: IdentitySpec, rules_dir: Path, state: Path) -> None:
        """Start, restart or stop the sources `spec` asks for. Raises OSError or ValueError if a
        source cannot start (a port in use, an unreadable secret): the caller says what that
        means (refuse to start, or keep running without the source and log it)."""
        if (spec, rules_dir, state) == (self._spec, self._base, self._state):
            return
        if state != self._state:
            self._close_store()
            self._state = state
        old = self._spec
        self._spec, self._base = spec, rules_dir
        if old is None or old.radius != spec.radius or self.radius is None:
            self._stop_radius()
            if spec.radius is not None:
                try:
                    self._start_radius(spec, rules_dir, state)
                except BaseException:
                    # Not in force: the same spec given again tries again. Without a listener no
                    # Stop can arrive, so no one stays bound (the store keeps them for a restart).
                    self._spec = None
                    self._set_people_empty()
                    raise
            else:
                self._set_people_empty()
        if old is None or old.dhcp != spec.dhcp:
            self._stop_leases()
            if spec.dhcp:
                files = [(rules_dir / d.leases, d.format) for d in spec.dhcp]
                self.leases = LeaseWatcher(files, self._publish_leases).start()
            else:
                self._publish_leases([])
        self.active = spec.radius is not None or bool(spec.dhcp)

    def _open_store(self, state: Path) -> BindingStore:
        if self._store is None:
            self._store = BindingStore(state / BINDINGS_DB)
        return self._store

    def _start_radius(self, spec: IdentitySpec, rules_dir: Path, state: Path) -> None:
        radius = spec.radius
        assert radius is not None
        secret = read_secret(rules_dir / radius.secret_file)
        host, _, port = radius.listen.rpartition(":")
        accounting = Accounting(
            lifetime_s=lifetime_seconds(radius.lifetime), groups_from=radius.groups_from
        )
        store = self._open_store(state)
        restored = store.load(self.clock())
        accounting.load({b.address: (session, nas) for b, session, nas in restored})
        with self._swap:
            self.bindings = Bindings.EMPTY.with_leases(self._current_leases()).with_people(
                {b.address: b for b, _, _ in restored}
            )
        self.radius = RadiusListener(
            host.strip("[]"), int(port), secret, accounting, self._publish_people, self.clock
        ).start()

    def _current_leases(self) -> list[Binding]:
        return self.bindings.leases()

    def _publish_people(
        self,
        changes: dict[str, Binding | None],
        sessions: Mapping[str, tuple[str | None, str | None]],
    ) -> None:
        """A burst of RADIUS changes: into the snapshot first (in force for the next request),
        then into the store (for `who` and a restart)."""
        with self._swap:
            self.bindings = self.bindings.with_people(changes)
        for address, b in changes.items():
            log.info(
                "identity_bound" if b is not None else "identity_ended",
                source="radius",
                address=address,
                user=b.user if b is not None else None,
            )
        store = self._store
        if store is not None:
            try:
                store.write(changes, sessions)
            except Exception as e:  # the snapshot is right; only `who` and a restart lag
                log.error("identity_store_failed", error=str(e))

    def _publish_leases(self, leases: list[Binding]) -> None:
        with self._swap:
            self.bindings = self.bindings.with_leases(leases)

    def _set_people_empty(self) -> None:
        with self._swap:
            self.bindings = Bindings.EMPTY.with_leases(self._current_leases())

    # ----------------------------------------------------------------- shutdown

    def counters(self) -> dict[str, Any]:
        """Packets accepted and refused by reason, the bindings in force and the people they
        name, for /metrics (read at a scrape: counting walks the snapshot)."""
        live = self.bindings.people(self.clock()) if self.active else []
        bound = {"bindings": len(live), "people": len({b.user for b in live})}
        if self.radius is None:
            return {"accepted": 0, "refused": {}, **bound}
        c = self.radius.counters
        return {"accepted": c.accepted, "refused": dict(c.refused), **bound}

    def _stop_radius(self) -> None:
        if self.radius is not None:
            self.radius.stop()
            self.radius = None

    def _stop_leases(self) -> None:
        if self.leases is not None:
            self.leases.stop()
            self.leases = None

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def stop(self) -> None:
        self._stop_radius()
        self._stop_leases()
        self._close_store()
        self._spec = None
        self.active = False
