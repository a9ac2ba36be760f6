"""The addon alone, with mitmproxy's test helpers: options, hooks, and failing closed."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, tls
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import context
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.test import taddons, tflow, tutils

from conftest import EVENING, SCHOOL_HOURS, TEST_RULES  # type: ignore[import-not-found]
from socialguard.proxy import ManualClock, SocialGuard
from socialguard.proxy.addon import METADATA_KEY, describe_principal


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(TEST_RULES)
    return p


def _options(tmp_path: Path, rules: Path, **over: Any) -> dict[str, Any]:
    return {
        "connection_strategy": "lazy",
        "socialguard_rules": str(rules),
        "socialguard_state": str(tmp_path / "state"),
        "socialguard_log_dir": str(tmp_path / "log"),
        "socialguard_node": "unit",
        **over,
    }


@pytest.fixture
def guard(tmp_path: Path, rules: Path) -> Iterator[tuple[SocialGuard, Any]]:
    addon = SocialGuard(ManualClock(SCHOOL_HOURS))
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.configure(addon, **_options(tmp_path, rules))
        try:
            yield addon, tctx
        finally:
            addon.done()


def _log(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted((tmp_path / "log").glob("*.jsonl")):
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return [r for r in out if r.get("type") == "decision"]


def _flow(host: str, path: str = "/", *, scheme: str = "https", accept: str = "text/html") -> Any:
    port = 443 if scheme == "https" else 80
    req = tutils.treq(
        host=host, port=port, scheme=scheme.encode(), path=path.encode(),
        headers=[(b"host", host.encode()), (b"accept", accept.encode())],
    )  # fmt: skip
    return tflow.tflow(req=req)


# ------------------------------------------------------------------------- configuration


def test_refuses_to_start_unless_connections_are_lazy(tmp_path: Path, rules: Path) -> None:
    addon = SocialGuard()
    with (
        taddons.context(addon, Proxyserver()) as tctx,
        pytest.raises(exceptions.OptionsError, match="lazy"),
    ):
        tctx.configure(addon, **_options(tmp_path, rules, connection_strategy="eager"))


def test_refuses_a_missing_rules_file(tmp_path: Path) -> None:
    addon = SocialGuard()
    with (
        taddons.context(addon, Proxyserver()) as tctx,
        pytest.raises(exceptions.OptionsError, match="does not exist"),
    ):
        tctx.configure(addon, **_options(tmp_path, tmp_path / "nope.yaml"))


def test_refuses_an_invalid_rules_file_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        TEST_RULES.replace(
            "who: [staff]\n    what:\n      categories", "who: [staf]\n    what:\n      categories"
        )
    )
    addon = SocialGuard()
    with (
        taddons.context(addon, Proxyserver()) as tctx,
        pytest.raises(exceptions.OptionsError, match=r"bad\.yaml:\d+"),
    ):
        tctx.configure(addon, **_options(tmp_path, bad))


def test_refuses_rules_whose_own_tests_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEST_RULES.replace("expect: allow", "expect: block"))
    addon = SocialGuard()
    with (
        taddons.context(addon, Proxyserver()) as tctx,
        pytest.raises(exceptions.OptionsError, match="FAIL"),
    ):
        tctx.configure(addon, **_options(tmp_path, bad))


def test_bad_option_value_is_rolled_back(guard: tuple[SocialGuard, Any]) -> None:
    addon, tctx = guard
    with pytest.raises(exceptions.OptionsError, match="socialguard_node"):
        tctx.configure(addon, socialguard_node="../../etc")
    assert tctx.options.socialguard_node == "unit"


# ------------------------------------------------------------------------- requests


def test_blocked_request_gets_the_block_page_and_one_record(
    guard: tuple[SocialGuard, Any], tmp_path: Path
) -> None:
    addon, _ = guard
    flow = _flow("www.facebook.com")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    ref = flow.response.headers["X-SocialGuard-Reference"]
    assert ref in flow.response.get_text()
    [record] = [r for r in _log(tmp_path) if r["decision_id"] == ref]
    assert (record["action"], record["basis"]) == ("block", "rule")


def test_allowed_request_is_left_alone(guard: tuple[SocialGuard, Any]) -> None:
    addon, _ = guard
    flow = _flow("www.example.org")
    addon.requestheaders(flow)
    assert flow.response is None
    assert flow.metadata[METADATA_KEY].action == "allow"


def test_mixed_case_trailing_dot_host_is_normalised(guard: tuple[SocialGuard, Any]) -> None:
    addon, _ = guard
    flow = _flow("WWW.FaceBook.COM.")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403


def test_http2_host_header_beside_authority_is_decided_too(
    guard: tuple[SocialGuard, Any], tmp_path: Path
) -> None:
    addon, _ = guard
    req = tutils.treq(
        host="www.example.org", port=443, scheme=b"https", authority=b"www.example.org",
        http_version=b"HTTP/2.0", headers=[(b"host", b"www.facebook.com")],
    )  # fmt: skip
    flow = tflow.tflow(req=req)
    flow.client_conn.sni = "www.example.org"
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert set(_log(tmp_path)[-1]["hosts"]) == {"www.example.org", "www.facebook.com"}


def test_ip_literal_host_is_decided_not_waved_through(
    guard: tuple[SocialGuard, Any], tmp_path: Path
) -> None:
    addon, _ = guard
    flow = _flow("192.0.2.10", scheme="http")
    addon.requestheaders(flow)
    assert any(r["host"] == "192.0.2.10" for r in _log(tmp_path))


def test_engine_failure_blocks_and_is_logged_as_error(
    guard: tuple[SocialGuard, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addon, _ = guard

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr("socialguard.engine.decide", broken)
    flow = _flow("www.example.org")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    [record] = _log(tmp_path)
    assert (record["action"], record["basis"]) == ("block", "error")


def test_fail_open_policy_lets_an_engine_failure_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "open.yaml"
    rules.write_text("fail: open\n" + TEST_RULES)
    addon = SocialGuard(ManualClock(EVENING))
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.configure(addon, **_options(tmp_path, rules))
        try:
            monkeypatch.setattr("socialguard.engine.decide", lambda *a, **k: 1 / 0)
            flow = _flow("www.example.org")
            addon.requestheaders(flow)
            assert flow.response is None
            assert [(r["action"], r["basis"]) for r in _log(tmp_path)] == [("allow", "error")]
        finally:
            addon.done()


def test_undecided_request_is_refused_in_request_hook(guard: tuple[SocialGuard, Any]) -> None:
    addon, _ = guard
    flow = _flow("www.example.org")  # requestheaders never ran for it
    assert addon.request(flow) is None  # answered at once, no coroutine
    assert flow.response is not None and flow.response.status_code == 403


# ------------------------------------------------------------------------- TLS ClientHello


def _client_hello(sni: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def _hello_data(tctx: Any, sni: str | None) -> tls.ClientHelloData:
    client = tflow.tclient_conn()
    ctx = context.Context(client, tctx.options)
    ctx.server.address = (sni or "192.0.2.1", 443)
    hello = parse_client_hello(_client_hello(sni))
    assert hello is not None
    client.sni = hello.sni  # as mitmproxy's TLS layer does just before the hook
    return tls.ClientHelloData(ctx, hello)


def test_non_social_sni_is_passed_through(guard: tuple[SocialGuard, Any]) -> None:
    addon, tctx = guard
    data = _hello_data(tctx, "www.example.org")
    addon.tls_clienthello(data)
    assert data.ignore_connection is True


def test_social_sni_is_inspected(guard: tuple[SocialGuard, Any]) -> None:
    addon, tctx = guard
    data = _hello_data(tctx, "www.facebook.com")
    addon.tls_clienthello(data)
    assert data.ignore_connection is False


def _extended(raw: bytes, ext_type: int, body: bytes = b"", random: bytes | None = None) -> bytes:
    """A raw ClientHello (handshake body) with one more extension at the end of its list, and
    optionally another `random`: version (2), random (32), session id (1 + n), cipher suites
    (2 + n), compression methods (1 + n), extensions (2 + n)."""
    at = 2 + 32
    at += 1 + raw[at]
    at += 2 + int.from_bytes(raw[at : at + 2], "big")
    at += 1 + raw[at]
    length = int.from_bytes(raw[at : at + 2], "big")
    extension = ext_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body
    head = raw[:2] + (random if random is not None else raw[2:34]) + raw[34:at]
    return head + (length + len(extension)).to_bytes(2, "big") + raw[at + 2 :] + extension


def _hello_variant(tctx: Any, sni: str, ext_type: int | None, random: bytes | None = None) -> Any:
    real = _hello_data(tctx, sni)
    raw = real.client_hello.raw_bytes(wrap_in_record=False)
    if ext_type is not None:
        raw = _extended(raw, ext_type, b"\x00\x01", random)
    elif random is not None:
        raw = raw[:2] + random + raw[34:]
    return tls.ClientHelloData(real.context, tls.ClientHello(raw))


def test_encrypted_client_hello_is_never_passed_through_on_its_outer_sni(
    guard: tuple[SocialGuard, Any],
) -> None:
    addon, tctx = guard
    # The same hello as a passed-through one, with an encrypted_client_hello extension (0xfe0d).
    data = _hello_variant(tctx, "www.example.org", 0xFE0D)
    assert data.client_hello.sni == "www.example.org"
    addon.tls_clienthello(data)
    assert data.ignore_connection is False
    plain = _hello_variant(tctx, "www.example.org", None)
    addon.tls_clienthello(plain)
    assert plain.ignore_connection is True


@pytest.mark.parametrize(
    ("ext_type", "random", "expected"),
    [
        (None, None, False),
        (0xFE0D, None, True),
        # the two bytes of the type by chance in the random: the extension list decides
        (None, b"\xfe\x0d" * 16, False),
        (0xFE0D, b"\xfe\x0d" * 16, True),
        (0xFE0E, None, False),  # a neighbouring type is not ECH
    ],
)
def test_offers_ech_agrees_with_the_parsed_extension_list(
    guard: tuple[SocialGuard, Any], ext_type: int | None, random: bytes | None, expected: bool
) -> None:
    from socialguard.proxy.addon import _offers_ech

    _, tctx = guard
    hello = _hello_variant(tctx, "www.example.org", ext_type, random).client_hello
    assert (0xFE0D in [t for t, _ in hello.extensions]) is expected  # the variant is what it says
    assert _offers_ech(hello) is expected


def test_clienthello_failure_refuses_the_connection_without_contacting_the_origin(
    guard: tuple[SocialGuard, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    addon, tctx = guard
    monkeypatch.setattr("socialguard.engine.decide_connection_names", lambda *a, **k: 1 / 0)
    data = _hello_data(tctx, "www.example.org")
    addon.tls_clienthello(data)
    assert data.ignore_connection is True
    server = tflow.tserver_conn()
    addon.server_connect(ServerConnectionHookData(server, data.context.client))
    assert server.error


def test_principal_description_names_user_device_and_groups() -> None:
    from socialguard.engine.model import Principal

    p = Principal("10.20.1.5", frozenset({"staff"}), user="jdoe", device="lap-17")
    assert describe_principal(p) == "user jdoe, device lap-17, address 10.20.1.5 (staff)"


# ------------------------------------------------------------------------- proxy authentication


@pytest.fixture
def auth_guard(tmp_path: Path) -> Iterator[tuple[SocialGuard, Any]]:
    import bcrypt

    pw_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "users.htpasswd").write_text(f"jdoe:{pw_hash}\n")
    rules = tmp_path / "auth.yaml"
    rules.write_text("auth:\n  htpasswd: users.htpasswd\n" + TEST_RULES)
    addon = SocialGuard(ManualClock(EVENING))
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.configure(addon, **_options(tmp_path, rules))
        try:
            yield addon, tctx
        finally:
            addon.done()


def test_explicit_proxy_without_credentials_gets_407(auth_guard: tuple[SocialGuard, Any]) -> None:
    addon, _ = auth_guard
    flow = _flow("www.example.org", scheme="http")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 407
    assert "Basic" in flow.response.headers["Proxy-Authenticate"]


def test_valid_credentials_name_the_user_and_are_not_forwarded(
    auth_guard: tuple[SocialGuard, Any], tmp_path: Path
) -> None:
    import base64

    addon, _ = auth_guard
    flow = _flow("www.example.org", scheme="http")
    flow.request.headers["Proxy-Authorization"] = (
        "Basic " + base64.b64encode(b"jdoe:s3cret").decode()
    )
    addon.requestheaders(flow)
    assert flow.response is None
    assert "Proxy-Authorization" not in flow.request.headers
    assert _log(tmp_path)[-1]["user"] == "jdoe"


def test_wrong_password_gets_407(auth_guard: tuple[SocialGuard, Any]) -> None:
    import base64

    addon, _ = auth_guard
    flow = _flow("www.example.org", scheme="http")
    flow.request.headers["Proxy-Authorization"] = "Basic " + base64.b64encode(b"jdoe:nope").decode()
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 407
