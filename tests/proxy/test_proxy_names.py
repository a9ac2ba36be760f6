"""Every name a request carries is decided, in transparent mode too (proxy/names.py).

Transparent mode needs the kernel's original destination, so the flows are built as mitmproxy's
transparent HTTP layer builds them: `request.host` is the original destination address, the
request line may keep an absolute-form authority, the Host header is the client's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.http import Headers
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow, tutils

from conftest import SCHOOL_HOURS, TEST_RULES  # type: ignore[import-not-found]
from socialguard.proxy import ManualClock, SocialGuard
from socialguard.proxy.names import request_names

NETWORK_RULES = TEST_RULES.replace(
    "    domains: [facebook.com, instagram.com, tiktok.com]\n",
    "    domains: [facebook.com, instagram.com, tiktok.com]\n    networks: [203.0.113.0/24]\n",
)


@pytest.fixture
def addon(tmp_path: Path) -> Iterator[SocialGuard]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(NETWORK_RULES)
    guard = SocialGuard(ManualClock(SCHOOL_HOURS))
    with taddons.context(guard, Proxyserver()) as tctx:
        tctx.configure(
            guard,
            connection_strategy="lazy",
            socialguard_rules=str(rules),
            socialguard_state=str(tmp_path / "state"),
            socialguard_log_dir=str(tmp_path / "log"),
            socialguard_node="unit",
        )
        try:
            yield guard
        finally:
            guard.done()


def _transparent_flow(dest: str, host: str, authority: str = "") -> Any:
    req = tutils.treq(
        host=dest, port=80, scheme=b"http", authority=authority.encode(), path=b"/feed",
        headers=[(b"host", host.encode()), (b"accept", b"text/html")],
    )  # fmt: skip
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("transparent")
    flow.client_conn.peername = ("127.0.0.1", 40000)
    flow.client_conn.sni = None
    return flow


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((tmp_path / "log").glob("*.jsonl")):
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return [r for r in out if r.get("type") == "decision"]


def test_transparent_absolute_form_authority_is_decided(addon: SocialGuard, tmp_path: Path) -> None:
    flow = _transparent_flow("198.51.100.9", "www.example.org", "www.facebook.com")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    [record] = _records(tmp_path)
    assert record["host"] == "www.facebook.com"


def test_transparent_original_destination_in_a_blocked_network_is_decided(
    addon: SocialGuard, tmp_path: Path
) -> None:
    flow = _transparent_flow("203.0.113.7", "www.example.org")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    [record] = _records(tmp_path)
    assert (record["action"], record["category"]) == ("block", "social")


def test_transparent_original_destination_no_rule_names_is_not_a_name(addon: SocialGuard) -> None:
    flow = _transparent_flow("198.51.100.9", "www.example.org")
    addon.requestheaders(flow)
    assert flow.response is None


@pytest.mark.parametrize(
    ("authority", "hosts", "dest", "explicit", "sni", "expected"),
    [
        (b"", [b"www.example.org"], "198.51.100.9", False, None, ("www.example.org",)),
        (b"", [], "198.51.100.9", False, None, ("198.51.100.9",)),
        (b"WWW.Facebook.com", [b"www.example.org"], "198.51.100.9", False, None,
         ("www.facebook.com", "www.example.org")),
        (b"", [b"www.example.org"], "www.example.org", True, "www.example.org",
         ("www.example.org",)),
        (b"", [b"a.example"], "b.example", True, "c.example",
         ("a.example", "b.example", "c.example")),
        (b"", [b"a.example", b"b.example"], "a.example", True, None, ("a.example", "b.example")),
    ],
)  # fmt: skip
def test_request_names_are_every_name_the_request_carries(  # noqa: PLR0917 - the table's columns
    authority: bytes,
    hosts: list[bytes],
    dest: str,
    explicit: bool,
    sni: str | None,
    expected: tuple[str, ...],
) -> None:
    data = tutils.treq(host=dest, authority=authority).data
    headers = Headers([(b"Host", h) for h in hosts])
    assert request_names(headers, data, explicit=explicit, sni=sni) == expected
