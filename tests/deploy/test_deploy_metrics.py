"""Metrics and the admin endpoint, over real loopback HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from socialguard.deploy.metrics import AdminServer, Metrics, run_checks


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def admin() -> Iterator[tuple[AdminServer, dict[str, bool]]]:
    state = {"policy": True, "store": True, "log": True}
    server = AdminServer(
        Metrics(),
        {name: (lambda name=name: state[name]) for name in state},
    )
    server.start()
    yield server, state
    server.stop()


def _url(server: AdminServer, path: str) -> str:
    host, port = server.address
    return f"http://{host}:{port}{path}"


def test_decisions_are_counted_by_action_basis_and_stage() -> None:
    m = Metrics()
    m.decision("block", "rule", 0.0001)
    m.decision("block", "rule", 0.0002)
    m.decision("allow", "grant", 0.0001)
    m.decision("pass", "default", 0.00001, stage="connection")
    s = _samples(m.render().decode())
    key = "socialguard_decisions_total"
    assert s[(key, (("action", "block"), ("basis", "rule"), ("stage", "request")))] == 2
    assert s[(key, (("action", "allow"), ("basis", "grant"), ("stage", "request")))] == 1
    assert s[(key, (("action", "pass"), ("basis", "default"), ("stage", "connection")))] == 1
    assert s[("socialguard_decision_seconds_count", (("stage", "request"),))] == 3


def test_latency_lands_in_the_right_bucket() -> None:
    m = Metrics()
    m.decision("allow", "rule", 0.003)
    s = _samples(m.render().decode())
    bucket = "socialguard_decision_seconds_bucket"
    assert s[(bucket, (("le", "0.0025"), ("stage", "request")))] == 0
    assert s[(bucket, (("le", "0.005"), ("stage", "request")))] == 1


def test_reloads_and_overrides_are_recorded() -> None:
    m = Metrics()
    m.reload(ok=True)
    m.reload(ok=False)
    m.reload(ok=False)
    m.overrides(grants=4, emergencies=1)
    s = _samples(m.render().decode())
    assert s[("socialguard_rules_reloads_total", (("result", "ok"),))] == 1
    assert s[("socialguard_rules_reloads_total", (("result", "rejected"),))] == 2
    assert s[("socialguard_active_grants", ())] == 4
    assert s[("socialguard_active_emergencies", ())] == 1
    assert s[("socialguard_policy_loaded", ())] == 1


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.decision("block", "rule", 0.001)
    s = _samples(b.render().decode())
    assert not any(k[0] == "socialguard_decisions_total" for k in s)


def test_a_raising_check_is_reported_not_raised() -> None:
    def broken() -> bool:
        raise OSError("disk full")

    healthy, results = run_checks({"ok": lambda: True, "log": broken})
    assert not healthy
    assert results["ok"] == "ok"
    assert results["log"] == "error: OSError: disk full"


def test_healthz_is_200_when_every_check_passes(admin) -> None:
    server, _ = admin
    r = httpx.get(_url(server, "/healthz"))
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"log": "ok", "policy": "ok", "store": "ok"}}


def test_healthz_is_503_and_names_the_failing_check(admin) -> None:
    server, state = admin
    state["store"] = False
    r = httpx.get(_url(server, "/healthz"))
    assert r.status_code == 503
    body = json.loads(r.text)
    assert body["status"] == "failing"
    assert body["checks"]["store"] == "failing"
    assert body["checks"]["policy"] == "ok"


def test_metrics_endpoint_serves_prometheus_text(admin) -> None:
    server, _ = admin
    server.metrics.decision("block", "rule", 0.0004)
    r = httpx.get(_url(server, "/metrics"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    s = _samples(r.text)
    labels = (("action", "block"), ("basis", "rule"), ("stage", "request"))
    assert s[("socialguard_decisions_total", labels)] == 1


def test_unknown_path_is_404(admin) -> None:
    server, _ = admin
    assert httpx.get(_url(server, "/admin")).status_code == 404


def test_admin_server_listens_on_localhost_only_by_default(admin) -> None:
    server, _ = admin
    assert server.address[0] == "127.0.0.1"


def test_stop_releases_the_port() -> None:
    server = AdminServer(Metrics(), {})
    server.start()
    host, port = server.address
    server.stop()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))  # raises if the admin server still held it


def test_port_in_use_fails_at_start() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = AdminServer(Metrics(), {}, port=s.getsockname()[1])
        with pytest.raises(OSError):
            server.start()


def test_tracked_overrides_are_counted_at_scrape_time() -> None:
    import math
    from datetime import UTC, datetime, timedelta

    from socialguard.engine import Overrides
    from socialguard.engine.model import Emergency, Grant

    now = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    grants = [
        Grant(f"g{i}", f"user:u{i}", ("facebook.com",), now, now + timedelta(hours=1), "r", "admin")
        for i in range(3)
    ]
    emergency = Emergency("e1", "all", now, None, "storm", "admin")
    current: list[object | None] = [None]
    m = Metrics()
    m.track_overrides(lambda: current[0])
    s = _samples(m.render().decode())
    assert s[("socialguard_active_grants", ())] == 0
    current[0] = Overrides.build(grants, [emergency])
    s = _samples(m.render().decode())
    assert s[("socialguard_active_grants", ())] == 3
    assert s[("socialguard_active_emergencies", ())] == 1

    def broken() -> object:
        raise RuntimeError("store gone")

    m.track_overrides(broken)
    s = _samples(m.render().decode())
    assert math.isnan(s[("socialguard_active_grants", ())])


def test_a_latency_on_a_bound_counts_in_that_bucket_and_inf_counts_all() -> None:
    m = Metrics()
    m.decision("allow", "rule", 0.001)  # exactly a bound: le="0.001" includes it
    m.decision("allow", "rule", 2.5)  # past the last bound: only +Inf
    m.decision("allow", "rule", -1.0)  # a clock step backwards counts as 0
    s = _samples(m.render().decode())
    bucket = "socialguard_decision_seconds_bucket"
    assert s[(bucket, (("le", "0.0005"), ("stage", "request")))] == 1
    assert s[(bucket, (("le", "0.001"), ("stage", "request")))] == 2
    assert s[(bucket, (("le", "1.0"), ("stage", "request")))] == 2
    assert s[(bucket, (("le", "+Inf"), ("stage", "request")))] == 3
    assert s[("socialguard_decision_seconds_count", (("stage", "request"),))] == 3
    assert s[("socialguard_decision_seconds_sum", (("stage", "request"),))] == 2.501
