"""The proxy's identity sources, and the bindings snapshot they keep current.

The rules file's `identity:` section says which sources run; a reload that changes a source's
configuration restarts that source. With a directory configured, a person RADIUS bound gets their
directory groups too: looked up off the request path (`DirectoryGroups`), cached for
`group_cache`, and published into the snapshot like any other change, so a decision never waits
on LDAP. Each source runs on a thread of its own and reports changes
here; every change makes a new immutable `Bindings` snapshot, assigned in one reference store, so a
request sees the old bindings or the new ones, never half of a change, and the next request after a
change sees it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from socialguard.engine.identity import (
    SOURCE_RADIUS,
    SOURCE_SIGN_IN,
    Binding,
    Bindings,
    DirectorySpec,
    IdentitySpec,
    lifetime_seconds,
)

from .dhcp import LeaseWatcher
from .directory import Directory, DirectoryError, open_directory
from .directory_groups import DirectoryGroups
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
        self.directory: Directory | None = None
        self.directory_groups: DirectoryGroups | None = None
        # the people as RADIUS bound them (its groups only), and each user's addresses: what a
        # directory answer is merged into
        self._raw: dict[str, Binding] = {}
        self._addresses_of: dict[str, set[str]] = {}
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
        old = self._spec
        directory_changed = (
            old is None or old.directory != spec.directory or rules_dir != self._base
        )
        directory = None
        if directory_changed and spec.directory is not None:
            # before anything changes: a directory that cannot be used leaves the sources as
            # they were (at start, the proxy refuses to start, naming the URL)
            directory = self._open_directory(spec.directory, rules_dir)
        if directory_changed:
            self._start_directory(spec.directory, directory)
        if state != self._state:
            self._close_store()
            self._state = state
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
        if old is None or old.sign_in != spec.sign_in or old.radius != spec.radius:
            self._restore_sign_ins(spec, state)
        if old is None or old.dhcp != spec.dhcp:
            self._stop_leases()
            if spec.dhcp:
                files = [(rules_dir / d.leases, d.format) for d in spec.dhcp]
                self.leases = LeaseWatcher(files, self._publish_leases).start()
            else:
                self._publish_leases([])
        if directory_changed:
            self._republish_people()
        self.active = spec.radius is not None or bool(spec.dhcp) or spec.sign_in is not None

    # ----------------------------------------------------------------- the directory

    def _open_directory(self, spec: DirectorySpec, rules_dir: Path) -> Directory:
        """The directory, checked (reachable, the service account binds, both bases exist).
        Raises ValueError naming the URL or field, as any source that cannot start."""
        try:
            directory = open_directory(spec, rules_dir)
            directory.check()
        except DirectoryError as e:
            raise ValueError(f"directory: {e}") from e
        return directory

    def _start_directory(self, spec: DirectorySpec | None, directory: Directory | None) -> None:
        if self.directory_groups is not None:
            self.directory_groups.stop()
            self.directory_groups = None
        self.directory = directory
        if directory is not None and spec is not None:
            self.directory_groups = DirectoryGroups(
                directory,
                lifetime_seconds(spec.group_cache),
                self._publish_directory_groups,
                self._still_bound,
                self.clock,
            ).start()

    def _with_directory_groups(self, b: Binding) -> Binding:
        """`b` with the person's directory groups added (as last looked up; a lookup is asked
        for when there is none or it is stale). Called under `_swap`."""
        dg = self.directory_groups
        if dg is None or b.user is None:
            return b
        groups = dg.groups(b.user)
        if not groups:
            return b
        return dataclasses.replace(b, groups=b.groups | groups)

    def _publish_directory_groups(self, user: str, _groups: frozenset[str]) -> None:
        """A directory answer for `user` (from the worker thread): re-publish their bindings."""
        with self._swap:
            changes: dict[str, Binding | None] = {
                a: self._with_directory_groups(self._raw[a])
                for a in self._addresses_of.get(user, ())
            }
            if changes:
                self.bindings = self.bindings.with_people(changes)
        if changes:
            log.info("identity_directory_groups", user=user, addresses=sorted(changes))

    def _still_bound(self, user: str) -> bool:
        return user in self._addresses_of

    def _remember(self, address: str, b: Binding | None) -> None:
        """Keep `_raw` and `_addresses_of` in step with a change. Called under `_swap`."""
        old = self._raw.pop(address, None)
        if old is not None and old.user is not None:
            addresses = self._addresses_of.get(old.user)
            if addresses is not None:
                addresses.discard(address)
                if not addresses:
                    del self._addresses_of[old.user]
        if b is not None:
            self._raw[address] = b
            if b.user is not None:
                self._addresses_of.setdefault(b.user, set()).add(address)

    def _republish_people(self) -> None:
        """Every person again, with the directory groups now configured (or none)."""
        with self._swap:
            if self._raw:
                changes: dict[str, Binding | None] = {
                    a: self._with_directory_groups(b) for a, b in self._raw.items()
                }
                self.bindings = self.bindings.with_people(changes)

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
        accounting.load(
            {b.address: (session, nas) for b, session, nas in restored if b.source == SOURCE_RADIUS}
        )
        with self._swap:
            self._raw.clear()
            self._addresses_of.clear()
            for b, _, _ in restored:
                self._remember(b.address, b)
            self.bindings = Bindings.EMPTY.with_leases(self._current_leases()).with_people(
                {b.address: self._with_directory_groups(b) for b, _, _ in restored}
            )
        self.radius = RadiusListener(
            host.strip("[]"), int(port), secret, accounting, self._publish_people, self.clock
        ).start()

    def _restore_sign_ins(self, spec: IdentitySpec, state: Path) -> None:
        """The sign-in page's people, as the store kept them (a restart does not sign anyone
        out); or, without a sign-in page, none of them any more."""
        now = self.clock()
        with self._swap:
            current = self.bindings
        mine = {b.address: None for b in current.people(now) if b.source == SOURCE_SIGN_IN}
        changes: dict[str, Binding | None] = dict(mine)
        if spec.sign_in is not None:
            restored = self._open_store(state).load(now)
            changes.update({b.address: b for b, _, _ in restored if b.source == SOURCE_SIGN_IN})
        if changes:
            with self._swap:
                for address, b in changes.items():
                    self._remember(address, b)
                self.bindings = self.bindings.with_people(
                    {a: self._with_directory_groups(b) if b else None for a, b in changes.items()}
                )

    # ----------------------------------------------------------------- the sign-in page

    def sign_in(self, binding: Binding) -> None:
        """Bind an address to the person who signed in on it: in force for the next request,
        then written to the store (for `who` and a restart). Blocking (SQLite): call it off the
        event loop."""
        self._publish_sign_in(binding.address, binding)

    def sign_out(self, address: str) -> Binding | None:
        """End the sign-in binding on `address` (sign-out); the binding ended, if there was one.
        Blocking, like `sign_in`."""
        current = self.bindings.person(address, self.clock())
        if current is None or current.source != SOURCE_SIGN_IN:
            return None
        self._publish_sign_in(address, None)
        return current

    def _publish_sign_in(self, address: str, binding: Binding | None) -> None:
        """Into the snapshot (with the person's directory groups, where a directory is
        configured), then into the store (what the sign-in said)."""
        with self._swap:
            self._remember(address, binding)
            published = self._with_directory_groups(binding) if binding is not None else None
            self.bindings = self.bindings.with_people({address: published})
        log.info(
            "identity_bound" if binding is not None else "identity_ended",
            source=SOURCE_SIGN_IN,
            address=address,
            user=binding.user if binding is not None else None,
        )
        store = self._store
        if store is not None:
            try:
                store.write({address: binding}, {})
            except Exception as e:  # the snapshot is right; only `who` and a restart lag
                log.error("identity_store_failed", error=str(e))

    def _current_leases(self) -> list[Binding]:
        return self.bindings.leases()

    def _publish_people(
        self,
        changes: dict[str, Binding | None],
        sessions: Mapping[str, tuple[str | None, str | None]],
    ) -> None:
        """A burst of RADIUS changes: into the snapshot first (in force for the next request),
        then into the store (for `who` and a restart). The store keeps what RADIUS said; the
        snapshot adds the directory's groups."""
        with self._swap:
            published: dict[str, Binding | None] = {}
            for address, b in changes.items():
                self._remember(address, b)
                published[address] = self._with_directory_groups(b) if b is not None else None
            self.bindings = self.bindings.with_people(published)
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
            self._raw.clear()
            self._addresses_of.clear()
            self.bindings = Bindings.EMPTY.with_leases(self._current_leases())

    # ----------------------------------------------------------------- shutdown

    def counters(self) -> dict[str, Any]:
        """Packets accepted and refused by reason, the bindings in force and the people they
        name, and the directory's counts, for /metrics (read at a scrape: counting walks the
        snapshot)."""
        live = self.bindings.people(self.clock()) if self.active else []
        bound = {"bindings": len(live), "people": len({b.user for b in live})}
        directory = self.directory.counters() if self.directory is not None else None
        if self.radius is None:
            return {"accepted": 0, "refused": {}, **bound, "directory": directory}
        c = self.radius.counters
        return {"accepted": c.accepted, "refused": dict(c.refused), **bound, "directory": directory}

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
        self._start_directory(None, None)
        self._close_store()
        self._spec = None
        self.active = False
