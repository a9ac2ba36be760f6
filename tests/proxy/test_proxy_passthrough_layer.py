"""A passed-through TLS connection gets mitmproxy's bare relay, as `--ignore-hosts` gives it.

Decided only in `tls_clienthello`, it kept two TLS layers that every relayed chunk crossed (issue
17's keep-alive passthrough figure); decided in `next_layer`, nothing but the relay is stacked.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import tls
from mitmproxy.addons.next_layer import NextLayer
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import context, events, layer, layers
from mitmproxy.proxy.layers import modes
from mitmproxy.proxy.layers.tls import ServerTLSLayer, parse_client_hello
from mitmproxy.test import taddons, tflow

from conftest import SCHOOL_HOURS, TEST_RULES  # type: ignore[import-not-found]
from socialguard.proxy import ManualClock, SocialGuard


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[tuple[SocialGuard, NextLayer, Any]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    addon, mitmproxy_next_layer = SocialGuard(ManualClock(SCHOOL_HOURS)), NextLayer()
    with taddons.context(addon, Proxyserver(), mitmproxy_next_layer) as tctx:
        tctx.configure(
            addon,
            connection_strategy="lazy",
            socialguard_rules=str(rules),
            socialguard_state=str(tmp_path / "state"),
            socialguard_log_dir=str(tmp_path / "log"),
            socialguard_node="unit",
        )
        try:
            yield addon, mitmproxy_next_layer, tctx
        finally:
            addon.done()


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((tmp_path / "log").glob("*.jsonl")):
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return [r for r in out if r.get("type") == "decision"]


def _client_hello(sni: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def _decide_layer(guard: tuple[SocialGuard, NextLayer, Any], sni: str) -> layer.NextLayer:
    """A transparent connection's first bytes, a ClientHello for `sni`, through mitmproxy's
    next_layer addon and then socialguard's, as mitmproxy calls them."""
    addon, mitmproxy_next_layer, tctx = guard
    ctx = context.Context(tflow.tclient_conn(), tctx.options)
    ctx.server.address = ("192.0.2.1", 443)
    ctx.layers = [modes.TransparentProxy(ctx)]
    nextlayer = layer.NextLayer(ctx)
    nextlayer.events.append(events.DataReceived(ctx.client, _client_hello(sni)))
    mitmproxy_next_layer.next_layer(nextlayer)
    assert isinstance(nextlayer.layer, ServerTLSLayer), "mitmproxy chose its TLS layers"
    addon.next_layer(nextlayer)
    return nextlayer


def test_a_passed_through_connection_gets_the_bare_relay(
    guard: tuple[SocialGuard, NextLayer, Any], tmp_path: Path
) -> None:
    nextlayer = _decide_layer(guard, "www.example.org")
    assert isinstance(nextlayer.layer, layers.TCPLayer)
    assert nextlayer.layer.flow is None, "relayed as mitmproxy's ignore_hosts relays: no flow"
    assert nextlayer.context.client.sni == "www.example.org"
    [record] = _records(tmp_path)
    assert (record["stage"], record["verdict"], record["host"]) == (
        "connection", "pass", "www.example.org",
    )  # fmt: skip


def test_an_inspected_connection_keeps_the_tls_layers_and_is_decided_once(
    guard: tuple[SocialGuard, NextLayer, Any], tmp_path: Path
) -> None:
    addon = guard[0]
    nextlayer = _decide_layer(guard, "www.facebook.com")
    assert isinstance(nextlayer.layer, ServerTLSLayer)
    hello = parse_client_hello(_client_hello("www.facebook.com"))
    assert hello is not None
    data = tls.ClientHelloData(nextlayer.context, hello)
    addon.tls_clienthello(data)  # the TLS layer's own hook, on the same connection
    assert data.ignore_connection is False
    assert [r["verdict"] for r in _records(tmp_path)] == ["inspect"]
