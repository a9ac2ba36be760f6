"""proxy/connections.py: mitmproxy's choice of layer, reviewed before a byte is relayed.

Transparent mode needs the kernel's original destination (SO_ORIGINAL_DST), so these cases build
the connection's context by hand, as mitmproxy's transparent listener would (client mode
`transparent`, server address the original destination), and run mitmproxy's own next_layer
addon, then socialguard's, on the client's first bytes. The explicit proxy's cases run through
the real proxy in tests/adversarial/test_adversarial_connections.py.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.addons.next_layer import NextLayer
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import context, events, layer, mode_specs
from mitmproxy.proxy.layers import ClientTLSLayer, HttpLayer, ServerTLSLayer, TCPLayer, modes
from mitmproxy.test import taddons, tflow

from conftest import SCHOOL_HOURS, TEST_RULES  # type: ignore[import-not-found]
from socialguard.proxy import ManualClock, SocialGuard
from socialguard.proxy.connections import AwaitHello, Refused, normalise_hello

NETWORK_RULES = TEST_RULES.replace(
    "    domains: [facebook.com, instagram.com, tiktok.com]\n",
    "    domains: [facebook.com, instagram.com, tiktok.com]\n    networks: [203.0.113.0/24]\n",
)
SSH = b"SSH-2.0-OpenSSH_9.6\r\n"


def _hello(sni: str) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def _with_version(record: bytes, version: bytes) -> bytes:
    return record[:1] + version + record[3:]


# ------------------------------------------------------------------------- the pure part


@pytest.mark.parametrize("version", [b"\x03\x04", b"\x03\xff", b"\x00\x00", b"\x0f\x0f"])
def test_a_hello_under_any_record_version_is_given_the_standard_one(version: bytes) -> None:
    real = _hello("www.example.org")
    assert normalise_hello(_with_version(real, version)) == _with_version(real, b"\x03\x01")


def test_a_hello_split_over_records_has_each_record_normalised() -> None:
    body = _hello("www.example.org")[5:]
    split = b"".join(
        b"\x16\x03\x04" + len(part).to_bytes(2, "big") + part for part in (body[:40], body[40:])
    )
    out = normalise_hello(split)
    assert out is not None
    assert out[1:3] == b"\x03\x01" and out[5 + 40 + 1 : 5 + 40 + 3] == b"\x03\x01"


def test_an_incomplete_hello_is_waited_for() -> None:
    real = _with_version(_hello("www.example.org"), b"\x03\x04")
    assert normalise_hello(real[:3]) is None
    assert normalise_hello(real[:100]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x04\x00\x00",  # an empty record
        b"\x16\x03\x04\x00\x04\x02\x00\x00\x00",  # a ServerHello first
        b"\x16\x03\x04\x00\x01\x01\x17\x03\x03\x00\x01x",  # a handshake interrupted by app data
    ],
)
def test_what_is_not_a_hello_is_not_taken_for_one(data: bytes) -> None:
    with pytest.raises(ValueError):
        normalise_hello(data)


# ------------------------------------------------------------------------- transparent mode


@contextlib.contextmanager
def _running(tmp_path: Path, rules_text: str) -> Iterator[Any]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    addon = SocialGuard(ManualClock(SCHOOL_HOURS))
    with taddons.context(addon, Proxyserver(), NextLayer()) as tctx:
        tctx.configure(
            addon,
            connection_strategy="lazy",
            socialguard_rules=str(rules),
            socialguard_state=str(tmp_path / "state"),
            socialguard_log_dir=str(tmp_path / "log"),
            socialguard_node="unit",
        )
        try:
            yield tctx
        finally:
            addon.done()


@pytest.fixture
def tctx(tmp_path: Path) -> Iterator[Any]:
    with _running(tmp_path, NETWORK_RULES) as running:
        yield running


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((tmp_path / "log").glob("*.jsonl")):
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return [r for r in out if r.get("type") == "decision"]


def _transparent(
    tctx: Any, dest: str, first_bytes: bytes, *, socialguard_first: bool = False
) -> layer.NextLayer:
    """The layer decision mitmproxy's transparent listener asks for, after the client's bytes,
    answered by mitmproxy's next_layer addon and socialguard's: in their order when embedded, or
    socialguard's first (a `mitmdump -s` script's hooks run before mitmproxy's next_layer)."""
    client = tflow.tclient_conn()
    client.proxy_mode = mode_specs.ProxyMode.parse("transparent")
    client.sni = None
    client.alpn = None
    ctx = context.Context(client, tctx.options)
    ctx.server.address = (dest, 443)
    modes.TransparentProxy(ctx)
    nextlayer = layer.NextLayer(ctx)
    nextlayer.events.append(events.DataReceived(client, first_bytes))
    _ask(tctx, nextlayer, socialguard_first=socialguard_first)
    return nextlayer


def _ask(tctx: Any, nextlayer: layer.NextLayer, *, socialguard_first: bool = False) -> None:
    hooks = [tctx.master.addons.get("nextlayer"), tctx.master.addons.get("socialguard")]
    for addon in reversed(hooks) if socialguard_first else hooks:
        addon.next_layer(nextlayer)


def test_transparent_hello_with_record_version_03_04_is_taken_as_tls(
    tctx: Any,
) -> None:
    hello = _with_version(_hello("www.facebook.com"), b"\x03\x04")
    decided = _transparent(tctx, "198.51.100.9", hello)
    assert isinstance(decided.layer, ServerTLSLayer)
    assert isinstance(decided.layer.child_layer, ClientTLSLayer)
    assert decided.data_client()[:3] == b"\x16\x03\x01"


@pytest.mark.parametrize("socialguard_first", [False, True])
def test_transparent_hello_still_arriving_is_waited_for_then_taken_as_tls(
    tctx: Any, socialguard_first: bool
) -> None:
    hello = _with_version(_hello("www.facebook.com"), b"\x03\x04")
    decided = _transparent(tctx, "198.51.100.9", hello[:50], socialguard_first=socialguard_first)
    awaiting = decided.layer
    assert isinstance(awaiting, AwaitHello)
    for event in decided.events:  # what NextLayer hands its chosen layer
        assert list(awaiting.handle_event(event)) == []
    commands = list(awaiting.handle_event(events.DataReceived(decided.context.client, hello[50:])))
    [asked] = [c for c in commands if isinstance(c, layer.NextLayerHook)]
    _ask(tctx, asked.data, socialguard_first=socialguard_first)
    assert isinstance(asked.data.layer, ServerTLSLayer)
    assert asked.data.data_client() == _with_version(hello, b"\x03\x01")


@pytest.mark.parametrize("socialguard_first", [False, True])
def test_hooks_in_either_order_refuse_a_raw_stream_to_a_blocked_network(
    tctx: Any, socialguard_first: bool
) -> None:
    decided = _transparent(tctx, "203.0.113.7", SSH, socialguard_first=socialguard_first)
    assert isinstance(decided.layer, Refused)


def test_transparent_raw_stream_to_a_blocked_network_is_refused_and_recorded(
    tctx: Any, tmp_path: Path
) -> None:
    decided = _transparent(tctx, "203.0.113.7", SSH)
    assert isinstance(decided.layer, Refused)
    [record] = _records(tmp_path)
    assert (record["stage"], record["action"], record["category"]) == ("tcp", "block", "social")


def test_transparent_raw_stream_to_an_address_is_refused_by_default(tctx: Any) -> None:
    """`ip_literals: inspect` (the default): nothing in an opaque stream can be inspected."""
    assert isinstance(_transparent(tctx, "198.51.100.9", SSH).layer, Refused)


def test_transparent_raw_stream_to_an_address_passes_where_the_policy_allows_addresses(
    tmp_path: Path,
) -> None:
    with _running(tmp_path, "ip_literals: allow\n" + NETWORK_RULES) as allowing:
        assert isinstance(_transparent(allowing, "198.51.100.9", SSH).layer, TCPLayer)
        assert isinstance(_transparent(allowing, "203.0.113.7", SSH).layer, Refused)


def test_transparent_http_is_left_to_the_per_request_decisions(tctx: Any) -> None:
    decided = _transparent(tctx, "203.0.113.7", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(decided.layer, HttpLayer)
