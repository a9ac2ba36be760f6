"""The sign-in page in transparent mode: the client knows nothing of a proxy, its requests arrive
addressed to an IP (the original destination) with the name in Host and SNI. Flows are built as
mitmproxy's transparent layers build them (tests/proxy/test_proxy_names.py); the provider is the
real one. A device that must sign in is sent to the portal, the portal's connection is inspected
(never passed through or refused, even when its name resolves to the gateway itself), and the
portal answers over TLS only."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from mitmproxy import tls
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import context, mode_specs
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.test import taddons, tflow, tutils
from socialguard_proxy_harness import SCHOOL_HOURS  # type: ignore[import-not-found]

from conftest import PORTAL, Provider, sign_in_rules  # type: ignore[import-not-found]
from socialguard.proxy import ManualClock, SocialGuard

TRANSPARENT = mode_specs.ProxyMode.parse("transparent")
CLIENT = ("127.0.0.9", 40000)


@pytest.fixture
def guard(tmp_path: Path, provider: Provider) -> Iterator[tuple[SocialGuard, Any]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(sign_in_rules(provider, tmp_path))
    addon = SocialGuard(ManualClock(SCHOOL_HOURS))
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.configure(
            addon,
            connection_strategy="lazy",
            socialguard_rules=str(rules),
            socialguard_state=str(tmp_path / "state"),
            socialguard_log_dir=str(tmp_path / "log"),
            socialguard_node="unit",
        )
        try:
            yield addon, tctx
        finally:
            addon.done()


def transparent_flow(
    dest: str, host: str, *, scheme: str = "http", method: str = "GET", path: str = "/feed?x=1"
) -> Any:
    port = 443 if scheme == "https" else 80
    req = tutils.treq(
        host=dest, port=port, scheme=scheme.encode(), authority=b"", path=path.encode(),
        method=method.encode(), headers=[(b"host", host.encode()), (b"accept", b"text/html")],
    )  # fmt: skip
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = TRANSPARENT
    flow.client_conn.peername = CLIENT
    flow.client_conn.sni = host if scheme == "https" else None
    return flow


def hello(tctx: Any, sni: str, dest: str) -> tls.ClientHelloData:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    client = tflow.tclient_conn()
    client.proxy_mode = TRANSPARENT
    client.peername = CLIENT
    context_ = context.Context(client, tctx.options)
    context_.server.address = (dest, 443)
    parsed = parse_client_hello(outgoing.read())
    assert parsed is not None
    client.sni = parsed.sni
    return tls.ClientHelloData(context_, parsed)


def answer(addon: SocialGuard, flow: Any) -> Any:
    addon.requestheaders(flow)
    pending = addon.request(flow)
    if pending is not None:
        asyncio.run(pending)
    return flow.response


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_transparent_request_a_rule_concerns_is_sent_to_the_portal(
    guard: tuple[SocialGuard, Any], scheme: str
) -> None:
    addon, _ = guard
    response = answer(addon, transparent_flow("157.240.1.1", "www.facebook.com", scheme=scheme))
    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert (target.scheme, target.hostname) == ("https", PORTAL)
    assert parse_qs(target.query)["next"] == [f"{scheme}://www.facebook.com/feed?x=1"]


def test_a_transparent_tls_connection_a_rule_concerns_is_inspected(
    guard: tuple[SocialGuard, Any],
) -> None:
    addon, tctx = guard
    data = hello(tctx, "www.facebook.com", "157.240.1.1")
    addon.tls_clienthello(data)
    assert data.ignore_connection is False  # inspected, so it can be sent to sign in


def test_the_portal_connection_is_inspected_even_when_it_resolves_to_the_gateway(
    guard: tuple[SocialGuard, Any],
) -> None:
    addon, tctx = guard
    data = hello(tctx, PORTAL, "127.0.0.1")  # the district's DNS names the gateway itself
    addon.tls_clienthello(data)
    assert data.ignore_connection is False
    assert data.context.client not in addon._refused
    page = answer(addon, transparent_flow("127.0.0.1", PORTAL, scheme="https", path="/"))
    assert page.status_code == 200
    assert b"Sign in to use this network" in page.content


def test_plain_http_to_the_portal_goes_to_https_in_transparent_mode(
    guard: tuple[SocialGuard, Any],
) -> None:
    addon, _ = guard
    response = answer(addon, transparent_flow("127.0.0.1", PORTAL))
    assert response.status_code == 308
    assert response.headers["location"] == f"https://{PORTAL}/feed?x=1"
    post = answer(addon, transparent_flow("127.0.0.1", PORTAL, method="POST"))
    assert post.status_code == 403
