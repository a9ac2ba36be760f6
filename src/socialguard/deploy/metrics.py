"""Prometheus metrics and the admin endpoint (`/healthz`, `/metrics`) of one proxy process.

The proxy's hot path only calls the small recording methods of `Metrics` (a counter increment
and a histogram observation each); everything else — rendering, health checks, HTTP — happens on
the admin server's own daemon thread, so a slow scraper can never hold up a decision. The registry
is private to each `Metrics` (not prometheus_client's global one) so that tests and several
embedded proxies in one process never see each other's figures.

The admin server listens on localhost on its own port, never on the proxy's port: the district's
clients must not be able to read it; a load balancer or the container HEALTHCHECK asks `/healthz`.
"""

from __future__ import annotations

import json
import socket
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

__all__ = ["AdminServer", "HealthCheck", "Metrics", "run_checks"]

log = structlog.get_logger(__name__)

# Decisions take well under a millisecond when all is well; upper buckets catch a stalled loop.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

HealthCheck = Callable[[], bool]
"""A health check: returns True when healthy; False or an exception means unhealthy."""


class Metrics:
    """The figures one proxy process exposes; the addon calls the recording methods.

    Example (in the addon)::

        metrics = Metrics()
        metrics.decision("block", "rule", 0.00012)            # per request
        metrics.decision("pass", "rule", 0.00003, stage="connection")
        metrics.reload(ok=False)                              # a broken rules file was rejected
        metrics.overrides(grants=3, emergencies=0)            # after each snapshot refresh
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._decisions = _DecisionCounts()
        self.registry.register(self._decisions)
        self._services = _ServiceCounts()
        self.registry.register(self._services)
        self._reloads = Counter(
            "socialguard_rules_reloads",
            "Rules reloads, by result: ok (new policy in force) or rejected (previous kept).",
            ["result"],
            registry=self.registry,
        )
        self._grants = Gauge(
            "socialguard_active_grants",
            "Grants in force in the proxy's current overrides snapshot.",
            registry=self.registry,
        )
        self._emergencies = Gauge(
            "socialguard_active_emergencies",
            "Emergencies in force in the proxy's current overrides snapshot.",
            registry=self.registry,
        )
        self._policy_loaded = Gauge(
            "socialguard_policy_loaded",
            "1 while a valid policy is in force, 0 while none is (the failure mode applies).",
            registry=self.registry,
        )
        # Pre-create the label sets a dashboard plots, so they read 0 rather than missing.
        for result in ("ok", "rejected"):
            self._reloads.labels(result=result)

    def decision(self, action: str, basis: str, seconds: float, stage: str = "request") -> None:
        """Count one decision and record how long it took (seconds, from a monotonic clock).

        This runs once per request and per connection, so it only adds to plain integers; the
        Prometheus families are built from them at scrape time (`_DecisionCounts.collect`).
        prometheus_client's own Counter and Histogram take a lock per update, which cost the
        proxy more than the rest of the decision's bookkeeping.
        """
        self._decisions.add(action, basis, stage, seconds)

    def service(self, service: str, action: str, visit: bool) -> None:
        """Count one request decided for a service (engine/services.py), and whether it was a
        visit (a page opened, proxy/visits.py). Plain integers, like `decision`."""
        self._services.add(service, action, visit)

    def reload(self, ok: bool) -> None:
        """Count one rules reload: `ok` when the new policy took effect, else it was rejected."""
        self._reloads.labels(result="ok" if ok else "rejected").inc()
        if ok:
            self._policy_loaded.set(1)

    def policy_loaded(self, loaded: bool) -> None:
        """Say whether a valid policy is in force (at start-up; `reload(ok=True)` sets it too)."""
        self._policy_loaded.set(1 if loaded else 0)

    def overrides(self, grants: int, emergencies: int) -> None:
        """Record how many grants and emergencies the current snapshot holds."""
        self._grants.set(grants)
        self._emergencies.set(emergencies)

    def track_overrides(self, snapshot: Callable[[], object | None]) -> None:
        """Read the grant and emergency gauges from the current overrides snapshot at each scrape.

        `snapshot()` returns the proxy's current `engine.Overrides` (or None before the first
        one); nothing runs on the proxy's hot path, the counting happens on the scrape.
        """
        self._grants.set_function(_counter(snapshot, "grants"))
        self._emergencies.set_function(_counter(snapshot, "emergencies"))

    def track_audit_shipping(self, stats: Callable[[], Any], what: str = "checkpoints") -> None:
        """Read the shipping figures (`audit.shipping.ShippingStats`, or None when nothing is
        shipped) at each scrape: an outage shows as a growing backlog and failures. `what`:
        "checkpoints" (`socialguard_audit_shipping_*`) or "records", every decision-log record
        (`socialguard_audit_record_shipping_*`)."""
        prefix = (
            "socialguard_audit_shipping"
            if what == "checkpoints"
            else ("socialguard_audit_record_shipping")
        )

        def figure(name: str) -> Callable[[], float]:
            def read() -> float:
                s = stats()
                return float(getattr(s, name)) if s is not None else 0.0

            return read

        for metric, attr, text in (
            ("backlog_bytes", "backlog_bytes",
             f"Bytes of {what} written locally but not yet shipped to the syslog collector."),
            ("failures", "failures",
             f"Failed attempts to ship {what} to the syslog collector (each is retried)."),
            ("shipped", "shipped", f"{what.capitalize()} shipped to the syslog collector."),
            ("connected", "connected", f"1 while connected to the syslog collector ({what})."),
        ):  # fmt: skip
            Gauge(f"{prefix}_{metric}", text, registry=self.registry).set_function(figure(attr))

    def track_identity(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        """Read the identity sources' figures at each scrape (`IdentityService.counters()`):
        RADIUS packets by result (accepted, bad_secret, malformed, not_accounting), the
        bindings in force, and the directory's answers and failures. The sources keep plain
        integers; nothing runs per packet here."""
        self.registry.register(_IdentityCounts(stats))

    def render(self) -> bytes:
        """The Prometheus text exposition of every figure in this registry."""
        return generate_latest(self.registry)


class _IdentityCounts(Collector):
    """`socialguard_radius_packets_total{result}`, `socialguard_identity_bindings`,
    `socialguard_identity_people`, the directory's `socialguard_directory_requests_total{result}`
    and `socialguard_directory_failures_total{reason}`, and `socialguard_sign_in_total`."""

    RESULTS = ("accepted", "bad_secret", "malformed", "not_accounting")
    DIRECTORY_RESULTS = ("authenticated", "refused", "found", "unknown")
    DIRECTORY_FAILURES = ("unreachable", "service_bind", "search", "ambiguous")
    SIGN_IN_OUTCOMES = ("signed_in", "signed_out")

    def __init__(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        packets = CounterMetricFamily(
            "socialguard_radius_packets",
            "RADIUS accounting packets, by result: accepted, or refused (bad_secret, malformed, "
            "not_accounting).",
            labels=["result"],
        )
        refused = dict(s.get("refused", {}))
        for result in self.RESULTS:
            n = s.get("accepted", 0) if result == "accepted" else refused.pop(result, 0)
            packets.add_metric([result], n)
        for result, n in refused.items():
            packets.add_metric([result], n)
        yield packets
        bindings = GaugeMetricFamily(
            "socialguard_identity_bindings",
            "Addresses (and IPv6 prefixes) an identity source binds to a person, in force now.",
        )
        bindings.add_metric([], s.get("bindings", 0))
        yield bindings
        people = GaugeMetricFamily(
            "socialguard_identity_people",
            "Distinct people those bindings name (a dual-stack phone is one person on two).",
        )
        people.add_metric([], s.get("people", 0))
        yield people

        directory = s.get("directory") or {}
        yield _labelled(
            CounterMetricFamily(
                "socialguard_directory_requests",
                "Directory sign-ins and look-ups, by answer: authenticated, refused (wrong "
                "password, unknown or ambiguous name), found, unknown.",
                labels=["result"],
            ),
            self.DIRECTORY_RESULTS,
            directory.get("results", {}),
        )
        yield _labelled(
            CounterMetricFamily(
                "socialguard_directory_failures",
                "Directory failures, by reason: unreachable, service_bind (the service account "
                "refused), search, ambiguous (a name matching more than one entry).",
                labels=["reason"],
            ),
            self.DIRECTORY_FAILURES,
            directory.get("failures", {}),
        )

        sign_in = s.get("sign_in") or {}
        yield _labelled(
            CounterMetricFamily(
                "socialguard_sign_in",
                "The sign-in page, by outcome: signed_in, signed_out, or the reason one was "
                "refused (unknown_state, wrong_address, bad_password, bad_token, cross_site, "
                "plain_http, rate_limited, unreachable, bad_signature, bad_claims, ...).",
                labels=["outcome"],
            ),
            self.SIGN_IN_OUTCOMES,
            sign_in,
        )

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("socialguard_sign_in", "", labels=["outcome"])
        yield CounterMetricFamily("socialguard_radius_packets", "", labels=["result"])
        yield GaugeMetricFamily("socialguard_identity_bindings", "")
        yield GaugeMetricFamily("socialguard_identity_people", "")
        yield CounterMetricFamily("socialguard_directory_requests", "", labels=["result"])
        yield CounterMetricFamily("socialguard_directory_failures", "", labels=["reason"])


def _labelled(
    family: CounterMetricFamily, known: tuple[str, ...], counts: Mapping[str, int]
) -> CounterMetricFamily:
    """Every known label (zero included, so a dashboard has a series from the start), then any
    other the source counted."""
    rest = dict(counts)
    for label in known:
        family.add_metric([label], rest.pop(label, 0))
    for label, n in rest.items():
        family.add_metric([label], n)
    return family


class _DecisionCounts(Collector):
    """`socialguard_decisions_total` and `socialguard_decision_seconds`, kept as plain integers.

    One writer: every decision is recorded on mitmproxy's event loop (the addon's hooks), so an
    update needs no lock; the scrape thread only reads, and a CPython list or dict read is atomic,
    so a scrape sees each figure either before or after an update, never torn.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        # stage -> [bucket counts (len(LATENCY_BUCKETS) + 1, the last is +Inf), sum]
        self._latency: dict[str, list[Any]] = {}

    def add(self, action: str, basis: str, stage: str, seconds: float) -> None:
        key = (action, basis, stage)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        hist = self._latency.get(stage)
        if hist is None:
            hist = self._latency[stage] = [[0] * (len(LATENCY_BUCKETS) + 1), 0.0]
        seconds = seconds if seconds > 0.0 else 0.0
        hist[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: a value on a bound counts in it
        hist[1] += seconds

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "socialguard_decisions",
            "Decisions taken, by action (allow/block, or pass/inspect/block per connection), "
            "basis (rule/grant/emergency/default/error) and stage (connection/request).",
            labels=["action", "basis", "stage"],
        )
        for (action, basis, stage), n in list(self._counts.items()):
            decisions.add_metric([str(action), str(basis), stage], n)
        yield decisions
        latency = HistogramMetricFamily(
            "socialguard_decision_seconds",
            "Time spent deciding (engine call plus the addon's own work), by stage.",
            labels=["stage"],
        )
        for stage, (buckets, total) in list(self._latency.items()):
            cumulative, running = [], 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), list(buckets), strict=True):
                running += n
                cumulative.append((_bound_text(bound), running))
            latency.add_metric([stage], cumulative, total)
        yield latency

    def describe(self) -> Iterator[Metric]:
        """Names only, so registering does not run `collect` (prometheus_client's convention)."""
        yield CounterMetricFamily("socialguard_decisions", "", labels=["action", "basis", "stage"])
        yield HistogramMetricFamily("socialguard_decision_seconds", "", labels=["stage"])


class _ServiceCounts(Collector):
    """`socialguard_service_requests_total` and `socialguard_service_visits_total` by service and
    action: what dashboards show as "Facebook: 40 visits blocked". One writer (the event loop),
    as `_DecisionCounts`; the label sets are bounded by the policy's service catalogue."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str], int] = {}
        self._visits: dict[tuple[str, str], int] = {}

    def add(self, service: str, action: str, visit: bool) -> None:
        key = (service, action)
        self._requests[key] = self._requests.get(key, 0) + 1
        if visit:
            self._visits[key] = self._visits.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        for name, counts, what in (
            ("socialguard_service_requests", self._requests, "Requests"),
            ("socialguard_service_visits", self._visits, "Visits (pages opened)"),
        ):
            family = CounterMetricFamily(
                name, f"{what} decided per service, by action (allow/block).",
                labels=["service", "action"],
            )  # fmt: skip
            for (service, action), n in list(counts.items()):
                family.add_metric([service, action], n)
            yield family

    def describe(self) -> Iterator[Metric]:
        for name in ("socialguard_service_requests", "socialguard_service_visits"):
            yield CounterMetricFamily(name, "", labels=["service", "action"])


def _bound_text(bound: float) -> str:
    """A bucket's `le` label as prometheus_client writes it (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _counter(snapshot: Callable[[], object | None], attr: str) -> Callable[[], float]:
    """How many entries the snapshot's `attr` mapping (key → tuple of overrides) holds."""

    def count() -> float:
        try:
            groups = getattr(snapshot(), attr, None) or {}
            return float(sum(len(v) for v in groups.values()))
        except Exception:  # a broken snapshot must not break the scrape
            return float("nan")

    return count


def run_checks(checks: Mapping[str, HealthCheck]) -> tuple[bool, dict[str, str]]:
    """Run every check; a check that raises is failed with its error, never crashes the endpoint.

    Returns (all healthy, {name: "ok" | "failing" | "error: ..."}).
    """
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            results[name] = "ok" if check() else "failing"
        except Exception as e:  # a health check must report, not raise
            results[name] = f"error: {type(e).__name__}: {e}"
    healthy = all(r == "ok" for r in results.values())
    return healthy, results


class _AdminHandler(BaseHTTPRequestHandler):
    """Serves /healthz and /metrics; everything else is 404. GET and HEAD only."""

    server: _AdminHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            healthy, results = run_checks(self.server.checks)
            body = json.dumps(
                {"status": "ok" if healthy else "failing", "checks": results}, sort_keys=True
            ).encode()
            self._reply(200 if healthy else 503, "application/json", body, send_body)
        elif path == "/metrics":
            self._reply(200, CONTENT_TYPE_LATEST, self.server.metrics.render(), send_body)
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n", send_body)

    def _reply(self, status: int, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr; they are not worth a log line."""


class _AdminHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        checks: Mapping[str, HealthCheck],
    ) -> None:
        self.metrics = metrics
        self.checks = dict(checks)
        super().__init__(address, _AdminHandler)


class _AdminHTTPServerV6(_AdminHTTPServer):
    address_family = socket.AF_INET6


class AdminServer:
    """The admin HTTP endpoint on its own port, served from a daemon thread.

    Example (in the addon's `running()` / `done()`)::

        admin = AdminServer(metrics, {"policy": lambda: policy is not None,
                                      "store": store_ok, "log": log_writable}, port=9180)
        admin.start()     # binds now: a port in use raises OSError here, not later
        ...
        admin.stop()

    `port=0` picks a free port (tests); `address` gives the bound (host, port).
    """

    def __init__(
        self,
        metrics: Metrics,
        checks: Mapping[str, HealthCheck],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.metrics = metrics
        self.checks = dict(checks)
        self.host = host
        self.port = port
        self._server: _AdminHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound; only valid after start()."""
        if self._server is None:
            raise RuntimeError("admin server not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve in a daemon thread. Idempotent."""
        if self._server is not None:
            return
        host = self.host.strip("[]")
        server_cls = _AdminHTTPServerV6 if ":" in host else _AdminHTTPServer
        self._server = server_cls((host, self.port), self.metrics, self.checks)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="socialguard-admin",
            daemon=True,
        )
        self._thread.start()
        host, port = self.address
        log.info("admin_server_started", host=host, port=port)

    def stop(self) -> None:
        """Stop serving and release the port. Idempotent."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        log.info("admin_server_stopped")
