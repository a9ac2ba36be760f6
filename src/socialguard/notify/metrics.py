"""`/metrics` figures of the notifications: attempts per channel, and the outbox's backlog.

Counters are this process's attempts (plain integers kept by the worker); the backlog (pending
deliveries, age of the oldest) is read from the store at scrape time, on the admin server's
thread, so it is the same figure on every worker and never costs the proxy's event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["NotificationCounts"]


class NotificationCounts(Collector):
    """`socialguard_notifications_{sent,failed,abandoned}_total{channel}`,
    `socialguard_notifications_pending{channel}` and
    `socialguard_notifications_oldest_pending_seconds{channel}`; channel is `email` or
    `webhook:NAME`. `notifier()` returns the running `Notifier` or None."""

    def __init__(self, notifier: Callable[[], Any], clock: Callable[[], datetime]) -> None:
        self._notifier = notifier
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        n = self._notifier()
        families = {
            name: CounterMetricFamily(f"socialguard_notifications_{name}", text, labels=["channel"])
            for name, text in (
                ("sent", "Notifications delivered by this process, per channel."),
                ("failed", "Failed delivery attempts by this process (each retried), per channel."),
                ("abandoned", "Deliveries given up (refused for good, or too old), per channel."),
            )
        }
        pending = GaugeMetricFamily(
            "socialguard_notifications_pending",
            "Deliveries in the outbox not yet made (all workers sharing the store), per channel.",
            labels=["channel"],
        )
        oldest = GaugeMetricFamily(
            "socialguard_notifications_oldest_pending_seconds",
            "Age of the oldest notice still waiting for a delivery, per channel.",
            labels=["channel"],
        )
        channels: set[str] = set()
        if n is not None:
            policy = n.policy()
            settings = getattr(policy, "notifications", None)
            if settings is not None:
                if settings.spec.email is not None:
                    channels.add("email")
                channels.update(f"webhook:{w}" for w in settings.spec.webhooks)
            stats = dict(n.stats.channels)
            channels.update(stats)
            backlog = {}
            try:
                backlog = {b.channel: b for b in n.outbox.backlog()}
            except Exception:  # a store that cannot be read must not break the scrape
                backlog = {}
            channels.update(backlog)
            now = self._clock()
            for ch in sorted(channels):
                s = stats.get(ch)
                for name, family in families.items():
                    family.add_metric([ch], getattr(s, name) if s else 0)
                b = backlog.get(ch)
                pending.add_metric([ch], b.pending if b else 0)
                age = (now - b.oldest).total_seconds() if b and b.oldest else 0.0
                oldest.add_metric([ch], max(0.0, age))
        yield from families.values()
        yield pending
        yield oldest

    def describe(self) -> Iterator[Metric]:
        for name in ("sent", "failed", "abandoned"):
            yield CounterMetricFamily(f"socialguard_notifications_{name}", "", labels=["channel"])
        yield GaugeMetricFamily("socialguard_notifications_pending", "", labels=["channel"])
        yield GaugeMetricFamily(
            "socialguard_notifications_oldest_pending_seconds", "", labels=["channel"]
        )
