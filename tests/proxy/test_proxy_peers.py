"""A keep-alive connection's standing facts (who is asking, its SNI) are worked out once, and
worked out again whenever something they rest on changes: the policy, the device's MAC address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow, tutils

from conftest import EVENING, SCHOOL_HOURS, TEST_RULES  # type: ignore[import-not-found]
from socialguard.proxy import ManualClock, SocialGuard
from socialguard.proxy.addon import METADATA_KEY
from socialguard.proxy.neighbours import NeighbourTable
from socialguard.proxy.reload import load_checked

STAFF_BY_DEVICE = TEST_RULES.replace(
    'networks: [127.0.0.0/8, "::1/128"]', "devices: devices.csv"
).split("tests:")[0]
DEVICES = "device,mac,ip,owner\nlaptop-17,AA-BB-CC-DD-EE-01,,ms-smith\n"


@contextmanager
def _running(tmp_path: Path, rules_text: str) -> Iterator[tuple[SocialGuard, Path]]:
    """The addon on `rules_text` (written to rules.yaml), shut down afterwards."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    addon = SocialGuard(ManualClock(SCHOOL_HOURS))
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.configure(
            addon, connection_strategy="lazy", socialguard_rules=str(rules),
            socialguard_state=str(tmp_path / "state"), socialguard_log_dir=str(tmp_path / "log"),
            socialguard_node="unit",
        )  # fmt: skip
        try:
            yield addon, rules
        finally:
            addon.done()


@pytest.fixture
def one_connection() -> Any:
    """A client connection that several requests (flows) share, as keep-alive and HTTP/2 do."""
    client = tflow.tclient_conn()
    client.proxy_mode = mode_specs.ProxyMode.parse("regular")
    client.peername = ("127.0.0.1", 40000)
    client.sni = None
    return client


def _ask(addon: SocialGuard, client: Any, host: str) -> str:
    req = tutils.treq(
        host=host, port=80, scheme=b"http", path=b"/",
        headers=[(b"host", host.encode()), (b"accept", b"text/html")],
    )  # fmt: skip
    flow = tflow.tflow(req=req, client_conn=client)
    addon.requestheaders(flow)
    return str(flow.metadata[METADATA_KEY].action)


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[tuple[SocialGuard, Path]]:
    with _running(tmp_path, TEST_RULES) as running:
        yield running


def test_the_next_request_on_an_open_connection_follows_a_reloaded_policy(
    guard: tuple[SocialGuard, Path], one_connection: Any
) -> None:
    addon, rules = guard
    assert _ask(addon, one_connection, "www.facebook.com") == "block"
    # The reload takes loopback out of the staff group: the same connection is no longer staff.
    moved = TEST_RULES.replace('[127.0.0.0/8, "::1/128"]', "[10.0.0.0/8]")
    rules.write_text(moved.split("tests:")[0])
    addon._install_reloaded(load_checked(rules))
    assert not addon._peers  # no open connection holds the old policy (a million domains, maybe)
    assert _ask(addon, one_connection, "www.facebook.com") == "allow"


def test_a_connection_whose_device_changes_mac_is_resolved_again(
    tmp_path: Path, one_connection: Any
) -> None:
    (tmp_path / "devices.csv").write_text(DEVICES)
    with _running(tmp_path, STAFF_BY_DEVICE) as (addon, _):
        table = {"127.0.0.1": "aa:bb:cc:dd:ee:01"}
        addon._neighbours = NeighbourTable(reader=lambda: table)
        addon._neighbours.refresh()
        assert _ask(addon, one_connection, "www.facebook.com") == "block"  # the staff laptop
        table = {"127.0.0.1": "aa:bb:cc:dd:ee:99"}  # the address now answers for another device
        addon._neighbours.refresh()
        assert _ask(addon, one_connection, "www.facebook.com") == "allow"


def test_a_closed_connection_is_forgotten(
    guard: tuple[SocialGuard, Path], one_connection: Any
) -> None:
    addon, _ = guard
    assert _ask(addon, one_connection, "www.example.org") == "allow"
    assert one_connection in addon._peers
    addon.client_disconnected(one_connection)
    assert one_connection not in addon._peers


def test_each_request_on_a_connection_is_decided_on_its_own_names(
    guard: tuple[SocialGuard, Path], one_connection: Any
) -> None:
    """The connection remembers the names its last request was addressed to; a request naming
    another host (a new Host header, or over HTTP/2 a new :authority) is asked about that host."""
    addon, _ = guard
    hosts = ["www.example.org", "www.facebook.com", "www.facebook.com", "www.example.org"]
    assert [_ask(addon, one_connection, h) for h in hosts] == ["allow", "block", "block", "allow"]
    # HTTP/2, one connection coalesced for both: the Host header the same, :authority not.
    asked = []
    for authority in (b"www.example.org", b"www.instagram.com", b"www.example.org"):
        req = tutils.treq(
            host="www.example.org", port=443, scheme=b"https", path=b"/", authority=authority,
            http_version=b"HTTP/2.0", headers=[(b"accept", b"text/html")],
        )  # fmt: skip
        flow = tflow.tflow(req=req, client_conn=one_connection)
        addon.requestheaders(flow)
        asked.append(str(flow.metadata[METADATA_KEY].action))
    assert asked == ["allow", "block", "allow"]
    # The same target, another Host header (as a transparent proxy sees every request: the target
    # is the address DNS gave, the name is in the header).
    asked = []
    for header in (b"www.example.org", b"www.facebook.com", b"www.example.org"):
        req = tutils.treq(
            host="192.0.2.80", port=80, scheme=b"http", path=b"/",
            headers=[(b"host", header), (b"accept", b"text/html")],
        )  # fmt: skip
        flow = tflow.tflow(req=req, client_conn=one_connection)
        addon.requestheaders(flow)
        asked.append(str(flow.metadata[METADATA_KEY].action))
    assert asked == ["allow", "block", "allow"]


def test_a_connection_keeps_the_answer_only_for_names_no_rule_concerns(
    guard: tuple[SocialGuard, Path], one_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host no rule concerns is answered by the policy's default whatever the time (see
    engine.decided_by_host), so its connection keeps the answer; a social host is asked about on
    every request, and its answer follows the clock."""
    from socialguard import engine

    addon, _ = guard
    asked: list[str] = []
    real = engine.decide

    def counting(policy: Any, request: Any, *args: Any) -> Any:
        asked.append(request.host)
        return real(policy, request, *args)

    monkeypatch.setattr(engine, "decide", counting)
    assert [_ask(addon, one_connection, "www.example.org") for _ in range(3)] == ["allow"] * 3
    assert asked == ["www.example.org"]
    assert _ask(addon, one_connection, "www.facebook.com") == "block"
    addon.clock.set(EVENING)  # type: ignore[attr-defined]
    assert _ask(addon, one_connection, "www.facebook.com") == "allow"
    assert _ask(addon, one_connection, "www.example.org") == "allow"
    assert asked == ["www.example.org", "www.facebook.com", "www.facebook.com", "www.example.org"]


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((tmp_path / "log").glob("*.jsonl")):
        out.extend(json.loads(line) for line in f.read_text().splitlines())
    return [r for r in out if r.get("type") == "decision"]


@pytest.mark.parametrize("log_paths", [False, True])
def test_the_common_record_logs_the_path_only_when_the_policy_asks(
    tmp_path: Path, one_connection: Any, log_paths: bool
) -> None:
    """The allowed request's record (the hook's shortest path) follows `logging.paths`."""
    rules = TEST_RULES.split("tests:")[0] + ("logging: {paths: true}\n" if log_paths else "")
    with _running(tmp_path, rules) as (addon, _):
        for page in ("/a/page?q=secret", "/other"):
            req = tutils.treq(
                host="www.example.org", port=80, scheme=b"http", path=page.encode(),
                headers=[(b"host", b"www.example.org")],
            )  # fmt: skip
            addon.requestheaders(tflow.tflow(req=req, client_conn=one_connection))
    records = [r for r in _records(tmp_path) if r.get("stage") == "request"]
    assert [r["action"] for r in records] == ["allow", "allow"]
    if log_paths:
        assert [r["path"] for r in records] == ["/a/page", "/other"]
        assert "query" in records[0]["erased"] and "query" not in records[1].get("erased", [])
    else:
        assert all("path" not in r and "path" in r["erased"] for r in records)


def test_a_kept_block_answer_still_gets_its_own_block_page_at_the_clock_time(
    tmp_path: Path, one_connection: Any
) -> None:
    """Under `default: block` a name no rule concerns is blocked by the default, an answer the
    connection keeps; the hook then reads the clock only for the block page, which must still
    carry this request's own reference and the time."""
    rules = TEST_RULES.replace("default: allow", "default: block").split("tests:")[0]
    with _running(tmp_path, rules) as (addon, _):
        flows = []
        for _ in range(2):
            req = tutils.treq(
                host="www.example.org", port=80, scheme=b"http", path=b"/",
                headers=[(b"host", b"www.example.org"), (b"accept", b"text/html")],
            )  # fmt: skip
            flows.append(tflow.tflow(req=req, client_conn=one_connection))
            addon.requestheaders(flows[-1])
        peer = addon._peers[one_connection]
        assert peer.by_host is not None and peer.by_host[1].action == "block"  # kept
    local = SCHOOL_HOURS.astimezone(ZoneInfo("America/Denver")).strftime("%Y-%m-%d %H:%M %Z")
    ids = []
    for flow in flows:
        verdict = flow.metadata[METADATA_KEY]
        assert verdict.action == "block" and verdict.basis == "default"
        assert flow.response is not None and flow.response.status_code == 403
        assert flow.response.headers["X-SocialGuard-Reference"] == verdict.decision_id
        assert local in flow.response.get_text()
        ids.append(verdict.decision_id)
    assert ids[0] != ids[1]
