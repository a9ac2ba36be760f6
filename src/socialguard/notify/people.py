"""Where the person a notice is about gets their mail ("your request was denied", "your access
ends at ...").

In this order: the rules' `notifications.people:` map (engine/notifications.py `route()` reads it
first); then the district's directory, the `mail` of the entry `lookup(user)` finds; then the
user name itself, when it is an address the sign-in provider vouched for. Never an address the
person typed into a form: the only names used are the ones an identity source bound.

The user name counts as vouched for when the rules' OIDC sign-in names people by their `email`
claim (`username_claim: email`), the name is a bare address, the directory (if any) has no entry
by that name (so no password sign-in can have bound it), and no other source could have named
them: RADIUS is not configured, or the sign-in page binds that user now (a RADIUS accounting
User-Name can be the outer identity a device chose, so an address-shaped one is not believed).

Directory lookups are blocking LDAP calls: the delivery worker makes them on its own thread,
before routing (never inside the store's write transaction), and keeps answers for `ttl_s`.
When the directory cannot be asked, the person's delivery is still made, with a placeholder
recipient (`PENDING` + person key) that is looked up again when it is sent: a failed lookup is
a failed attempt (counted, logged, retried with backoff, abandoned after `give_up_after` like a
relay outage), so an outage delays the person's mail and never loses it, and never holds up
the approvers' copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from socialguard.engine.identity import SOURCE_SIGN_IN
from socialguard.engine.notifications import check_email
from socialguard.errors import SocialGuardError

__all__ = ["PENDING", "AddressLookupFailed", "PersonAddresses", "is_address", "signed_in_by"]

log = structlog.get_logger(__name__)

PENDING = "person:"  # a delivery whose address is looked up when it is sent
TTL_S = 600.0  # a directory answer (an address, or "no entry") is kept this long
DOWN_S = 30.0  # after a failure, the directory is not asked again for this long

_UNKNOWN = object()


class AddressLookupFailed(SocialGuardError):
    """The directory could not be asked: the person's address is not known yet."""


def is_address(text: str) -> bool:
    try:
        check_email(text)
    except ValueError:
        return False
    return True


def signed_in_by(identity: Any, clock: Callable[[], float]) -> Callable[[str], bool]:
    """Does the sign-in page bind `user` now? (read from the identity service's snapshot)"""

    def signed_in(user: str) -> bool:
        people = identity.bindings.people(clock())
        return any(b.source == SOURCE_SIGN_IN and b.user == user for b in people)

    return signed_in


class PersonAddresses:
    """The person's address after `people:` (see the module docstring). Thread-safe.

    `policy()` is the compiled policy in force, `directory()` the running `Directory` or None,
    `signed_in(user)` whether the sign-in page binds `user` now.
    """

    def __init__(
        self,
        policy: Callable[[], Any],
        directory: Callable[[], Any],
        signed_in: Callable[[str], bool] = lambda _user: False,
        *,
        ttl_s: float = TTL_S,
        down_s: float = DOWN_S,
        monotonic: Callable[[], float] = time.monotonic,  # seconds, for the cache
    ) -> None:
        self._policy = policy
        self._directory = directory
        self._signed_in = signed_in
        self._ttl_s = ttl_s
        self._down_s = down_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # user → (address or None, when it was asked)
        self._known: dict[str, tuple[str | None, float]] = {}
        self._down_until = 0.0
        self.failures = 0  # directory lookups that failed, for the log and tests

    # -- the contract -------------------------------------------------------------------------

    def prepare(self, persons: Iterable[str]) -> None:
        """Look up (blocking) the people of notices about to be routed, so that routing, which
        runs inside a store transaction, only reads answers already known."""
        for person in dict.fromkeys(persons):
            try:
                self.resolve(person)
            except AddressLookupFailed:
                continue  # routed with a placeholder; asked again when it is sent

    def __call__(self, person: str) -> str | None:
        """The known address for `route()`: no I/O. Unknown yet (the directory was not
        reachable): None here, and `pending(person)` is true."""
        got = self._cached(person)
        return None if got is _UNKNOWN else got  # type: ignore[return-value]

    def pending(self, person: str) -> bool:
        """Is the person's address not known because the directory could not be asked?"""
        return self._user(person) is not None and self._cached(person) is _UNKNOWN

    def resolve(self, person: str) -> str | None:
        """The person's address, asking the directory if need be (blocking). Raises
        AddressLookupFailed when the directory could not be asked."""
        got = self._cached(person)
        if got is not _UNKNOWN:
            return got  # type: ignore[return-value]
        user = self._user(person)
        if user is None:
            return None  # a device or an address: only `people:` can name theirs
        found, in_directory = self._from_directory(user)
        if found is None and not in_directory and self._vouched(user):
            found = user
        with self._lock:
            self._known[user] = (found, self._monotonic())
        return found

    # -- the steps ----------------------------------------------------------------------------

    @staticmethod
    def _user(person: str) -> str | None:
        return person.removeprefix("user:") if person.startswith("user:") else None

    def _cached(self, person: str) -> object:
        user = self._user(person)
        if user is None:
            return None
        with self._lock:
            hit = self._known.get(user)
        if hit is not None and self._monotonic() - hit[1] < self._ttl_s:
            return hit[0]
        return _UNKNOWN

    def _from_directory(self, user: str) -> tuple[str | None, bool]:
        """(its `mail`, whether the directory has an entry by that name); raises
        AddressLookupFailed when it cannot be asked."""
        directory = self._directory()
        if directory is None:
            return None, False
        from socialguard.identity.directory import DirectoryError

        if self._monotonic() < self._down_until:
            raise AddressLookupFailed(f"the directory {directory.url} was not reachable just now")
        try:
            entry = directory.lookup(user)
        except DirectoryError as e:
            with self._lock:
                self.failures += 1
                self._down_until = self._monotonic() + self._down_s
            log.warning("notification_address_lookup_failed", user=user, error=str(e))
            raise AddressLookupFailed(f"the directory {directory.url}: {e}") from e
        if entry is None:
            return None, False
        email = entry.email.strip() if entry.email else None
        return (email if email and is_address(email) else None), True

    def _vouched(self, user: str) -> bool:
        """Is the user name an address the OIDC sign-in vouched for? (module docstring)"""
        policy = self._policy()
        spec = policy.identity.spec if policy is not None else None
        sign_in = spec.sign_in if spec is not None else None
        oidc = sign_in.oidc if sign_in is not None else None
        if spec is None or oidc is None or oidc.username_claim != "email" or not is_address(user):
            return False
        return spec.radius is None or self._signed_in(user)
