"""The delivery worker: one daemon thread per proxy process that routes, sends and retries notices.

Each pass (woken when the store changes, else every `interval_s`): raise the "about to end"
notices that are due, route new notices against the rules in force, claim the deliveries that are
due and send them — mail and webhooks are blocking calls with bounded time, made here, never on
mitmproxy's event loop. A failure keeps the delivery, counts it, and schedules the next attempt
with exponential backoff (capped, with jitter, so many proxies do not retry in step); one still
failing `give_up_after` after its notice was raised is abandoned and logged. A restart first takes
back what its node claimed and never finished, so it resumes where the last process stopped.

Times that are stored (due, leases, ages) come from the proxy's clock, like every other time the
store keeps; waiting uses the monotonic clock.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from socialguard.engine.notifications import (
    PERSON_KINDS,
    Notice,
    NotificationSettings,
    Target,
    route,
)
from socialguard.errors import SocialGuardError

from .channels import DeliveryError, post_webhook, send_mail
from .messages import describe, generic_payload, slack_payload, teams_payload
from .people import PENDING, AddressLookupFailed, PersonAddresses

log = structlog.get_logger(__name__)

FIRST_RETRY_S = 15.0
MAX_BACKOFF_S = 600.0  # ten minutes between attempts at most
LEASE = timedelta(minutes=5)  # longer than any one send (SMTP 120 s at most per exchange)
SCAN_EVERY_S = 30.0  # how often "about to end" is looked for (and old notices pruned)
KEEP = timedelta(days=90)  # finished notices are forgotten after this (an answer needs its request)


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before attempt `attempts + 1`: 15 s doubling per attempt, at most ten minutes,
    then between half and all of that (jitter)."""
    base = min(MAX_BACKOFF_S, FIRST_RETRY_S * 2 ** max(0, attempts - 1))
    return base * (0.5 + rand() / 2)


@dataclass
class ChannelStats:
    """This process's attempts on one channel (`email`, `webhook:NAME`)."""

    sent: int = 0
    failed: int = 0
    abandoned: int = 0


@dataclass
class NotifierStats:
    channels: dict[str, ChannelStats] = field(default_factory=dict)

    def of(self, channel: str) -> ChannelStats:
        stats = self.channels.get(channel)
        if stats is None:
            stats = self.channels[channel] = ChannelStats()
        return stats


def channel_label(target: Target) -> str:
    return "email" if target.channel == "email" else f"webhook:{target.recipient}"


class Notifier:
    """Delivers the store's notices for one node (see the module docstring).

    `policy()` returns the compiled policy in force (its `notifications`, district and groups),
    or None; `email_of(person_key)` may supply an address the rules' `people:` lacks, or
    `addresses` (notify/people.py: the directory's `mail`, an address the sign-in vouched for),
    whose blocking lookups this worker makes before routing and, if the directory was down,
    when the person's delivery is sent.
    """

    def __init__(
        self,
        store: Any,
        policy: Callable[[], Any],
        node: str,
        *,
        clock: Callable[[], datetime],
        interval_s: float = 2.0,
        email_of: Callable[[str], str | None] | None = None,
        addresses: PersonAddresses | None = None,
    ) -> None:
        from socialguard.overrides.outbox import SqliteOutbox

        self.outbox = SqliteOutbox(store)
        self.stats = NotifierStats()
        self.addresses = addresses
        self.email_of = addresses if addresses is not None else email_of
        self._policy = policy
        self._node = node
        self._clock = clock
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_scan = 0.0

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> Notifier:
        try:
            taken = self.outbox.release(self._node)
            if taken:
                log.info("notifications_resumed", node=self._node, deliveries=taken)
        except SocialGuardError as e:
            log.error("notifications_resume_failed", error=str(e))
        self._thread = threading.Thread(target=self._run, name="socialguard-notify", daemon=True)
        self._thread.start()
        return self

    def policy(self) -> Any:
        """The compiled policy in force, as this worker routes by it (None before one loads)."""
        return self._policy()

    def wake(self) -> None:
        """Look soon: the store changed (thread-safe, returns at once)."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as e:  # the store may be briefly unusable; try again next pass
                log.error("notifications_pass_failed", error=str(e))
            self._wake.wait(self._interval_s)
            self._wake.clear()

    # -- raising ------------------------------------------------------------------------------

    def rules_rejected(self, rules: str, errors: list[str], kept_version: str | None) -> None:
        """A changed rules file was refused: tell whoever `rules_rejected` names, once per
        version of the file (every worker of the proxy rejects the same file)."""
        digest = hashlib.sha256("\n".join([rules, *errors]).encode()).hexdigest()[:32]
        stamp = _file_stamp(rules)
        try:
            self.outbox.raise_notice(
                "rules_rejected",
                rules,
                facts={"rules": rules, "errors": errors[:50], "kept_version": kept_version},
                dedupe=f"rules_rejected:{stamp}:{digest}",
                now=self._clock(),
            )
        except SocialGuardError as e:
            log.error("notification_not_raised", kind="rules_rejected", error=str(e))
        self.wake()

    # -- one pass -----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Raise, route and send what is due now; return how many deliveries were attempted."""
        policy = self._policy()
        if policy is None:
            return 0
        settings: NotificationSettings = policy.notifications
        now = self._clock()
        if time.monotonic() >= self._next_scan:
            self._next_scan = time.monotonic() + SCAN_EVERY_S
            self.outbox.raise_ending(now, timedelta(minutes=settings.ending_lead_minutes))
            self.outbox.prune(now - KEEP)
        parents = policy.group_parents

        def router(notice: Notice) -> list[Target]:
            targets = route(notice, settings, parents, self.email_of)
            if self._address_pending(notice, settings):
                targets.append(Target("email", PENDING + str(notice.person)))
            return targets

        while True:
            self._prepare_addresses()
            if self.outbox.route_new(router, now) < 100:
                break
        attempted = 0
        for delivery in self.outbox.claim_due(self._node, now, LEASE):
            if self._stop.is_set() and attempted:
                break  # stopping: what is claimed is taken back by release() or the lease
            self._attempt(delivery, policy, settings)
            attempted += 1
        return attempted

    def _attempt(self, delivery: Any, policy: Any, settings: NotificationSettings) -> None:
        target: Target = delivery.target
        label = channel_label(target)
        stats = self.stats.of(label)
        try:
            self._send(delivery, policy, settings)
        except DeliveryError as e:
            stats.failed += 1
            now = self._clock()
            expired = now - delivery.created >= timedelta(minutes=settings.give_up_minutes)
            if e.permanent or expired:
                stats.abandoned += 1
                self.outbox.failed(delivery.id, self._node, str(e), None)
                log.error(
                    "notification_abandoned", channel=label, kind=delivery.notice.kind,
                    event_id=delivery.event_id, attempts=delivery.attempts + 1, error=str(e),
                )  # fmt: skip
                return
            retry_at = now + timedelta(seconds=backoff(delivery.attempts + 1))
            self.outbox.failed(delivery.id, self._node, str(e), retry_at)
            log.warning(
                "notification_failed", channel=label, kind=delivery.notice.kind,
                event_id=delivery.event_id, attempts=delivery.attempts + 1,
                retry_at=retry_at.isoformat(), error=str(e),
            )  # fmt: skip
            return
        stats.sent += 1
        self.outbox.delivered(delivery.id, self._node, self._clock())
        log.info(
            "notification_sent", channel=label, kind=delivery.notice.kind,
            event_id=delivery.event_id, attempts=delivery.attempts + 1,
        )  # fmt: skip

    def _send(self, delivery: Any, policy: Any, settings: NotificationSettings) -> None:
        target: Target = delivery.target
        message = describe(delivery.notice, policy.district.name, policy.district.timezone)
        if target.channel == "email":
            if settings.spec.email is None:
                raise DeliveryError("notifications.email is not configured any more")
            send_mail(settings.spec.email, settings.base, self._address(target), message,
                      delivery.event_id)  # fmt: skip
            return
        hook = settings.spec.webhooks.get(target.recipient)
        if hook is None:
            raise DeliveryError(f"webhook {target.recipient!r} is not configured any more")
        if hook.format == "slack":
            payload = slack_payload(message)
        elif hook.format == "teams":
            payload = teams_payload(message)
        else:
            payload = generic_payload(delivery.notice, message, delivery.event_id)
        post_webhook(hook, settings.base, payload, delivery.event_id, now=time.time())

    def _prepare_addresses(self) -> None:
        """Look up the people of the next notices to route, before routing takes the store's
        write lock (a directory lookup is network I/O)."""
        if self.addresses is not None:
            unrouted = self.outbox.unrouted_people()
            self.addresses.prepare(p for kind, p in unrouted if kind in PERSON_KINDS)

    def _address_pending(self, notice: Notice, settings: NotificationSettings) -> bool:
        """The person is told this kind, `people:` has no address for them, and the directory
        could not be asked: their copy waits for it (notify/people.py)."""
        return (
            self.addresses is not None
            and notice.person is not None
            and notice.kind in PERSON_KINDS
            and settings.spec.tell_person
            and settings.spec.email is not None
            and notice.person not in settings.people
            and self.addresses.pending(notice.person)
        )

    def _address(self, target: Target) -> str:
        """Where an email delivery goes: its address, or a pending person's, looked up now."""
        if not target.recipient.startswith(PENDING):
            return target.recipient
        person = target.recipient.removeprefix(PENDING)
        if self.addresses is None:
            raise DeliveryError(f"no way to look up the address of {person}", permanent=True)
        try:
            address = self.addresses.resolve(person)
        except AddressLookupFailed as e:
            raise DeliveryError(f"the address of {person} is not known yet: {e}") from e
        if address is None:
            raise DeliveryError(f"no address is known for {person}", permanent=True)
        return address


def _file_stamp(path: str) -> str:
    """Which save of the file was refused (two workers refusing one save share it)."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"
