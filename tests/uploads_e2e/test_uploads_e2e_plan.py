"""proxy/uploads.py in isolation (mitmproxy's test flows, the real engine and policy loader), and
the engine's connection verdict for sign-in hosts."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.test import tflow, tutils

from socialguard.engine import decide, decide_connection, resolve_principal
from socialguard.engine.model import Action, ConnectionVerdict, Request
from socialguard.engine.uploads import UploadRules
from socialguard.policy import load_policy
from socialguard.proxy import bodies, uploads

EVENING = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)
RULES = """\
district: {name: T, timezone: America/Denver}
groups:
  staff: {networks: [10.20.0.0/16]}
categories:
  social: {domains: [facebook.com]}
uploads:
  max_body: 1MB
  markers: [{name: confidential, pattern: CONFIDENTIAL}]
ACCOUNTS
rules:
  - id: staff-social-uploads
    description: no district material on social sites
    who: [staff]
    what: {categories: [social], uploads: true}
    action: block
default: allow
"""
ACCOUNTS = "accounts: {google: [district.org]}"


def policy(tmp_path: Path, accounts: str = "") -> Any:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("ACCOUNTS", accounts))
    return load_policy(path)


def flow(method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None,
         content: bytes | None = b"", http_version: str = "HTTP/1.1") -> Any:  # fmt: skip
    req = tutils.treq(method=method.encode(), headers=headers or [], content=content)
    req.http_version = http_version
    req.headers.pop("content-length", None)
    if content is not None and "transfer-encoding" not in req.headers:
        req.headers["content-length"] = str(len(content))
    return tflow.tflow(req=req)


@pytest.mark.parametrize(
    ("method", "headers", "version", "expected"),
    [
        ("POST", [(b"content-length", b"42")], "HTTP/1.1", 42),
        ("GET", [], "HTTP/1.1", 0),
        ("POST", [], "HTTP/1.1", 0),  # HTTP/1 without length or chunking has no body
        ("POST", [], "HTTP/2.0", None),  # HTTP/2 may send one undeclared
        ("GET", [], "HTTP/2.0", 0),
        ("POST", [(b"transfer-encoding", b"chunked")], "HTTP/1.1", None),
        ("POST", [(b"content-length", b"lots")], "HTTP/1.1", None),
        ("POST", [(b"content-length", b"-1")], "HTTP/1.1", None),
    ],
)
def test_declared_length(method: str, headers: list[tuple[bytes, bytes]], version: str,
                         expected: int | None) -> None:  # fmt: skip
    f = flow(method, headers, content=None, http_version=version)
    for k, v in headers:
        f.request.headers[k.decode()] = v.decode()
    assert uploads.declared_length(f.request) == expected


def _plan(tmp_path: Path, f: Any, client: str = "10.20.1.5") -> uploads.HeadersPlan:
    p = policy(tmp_path)
    principal = resolve_principal(p, client)
    host = "www.facebook.com"
    allowed = decide(p, Request(host=host, method=f.request.method), principal, EVENING)
    return uploads.plan_request(
        f, allowed, p.uploads,
        lambda: decide(p, Request(host=host, method="POST", upload=True), principal, EVENING),
        sni=host, hosts=(host,), extra={},
    )  # fmt: skip


def test_body_to_an_upload_rule_destination_is_held(tmp_path: Path) -> None:
    plan = _plan(tmp_path, flow(content=b"hello"))
    assert plan.held is not None
    assert plan.held.if_upload.rule_id == "staff-social-uploads"
    assert plan.held.if_not.action is Action.ALLOW


def test_held_body_is_not_streamed_even_if_mitmproxy_chose_to(tmp_path: Path) -> None:
    f = flow(content=b"hello")
    f.request.stream = True  # as stream_large_bodies would have set it
    assert _plan(tmp_path, f).held is not None
    assert f.request.stream is False


def test_person_no_rule_concerns_is_not_held_and_the_body_streams(tmp_path: Path) -> None:
    f = flow(content=b"x" * 1000)
    plan = _plan(tmp_path, f, client="10.99.0.1")
    assert plan.held is None and plan.decision.action is Action.ALLOW
    assert f.request.stream is True


def test_request_without_body_is_not_held(tmp_path: Path) -> None:
    plan = _plan(tmp_path, flow("GET", content=b""))
    assert plan.held is None and plan.decision.action is Action.ALLOW


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        ([(b"content-length", str(2 * 1024 * 1024).encode())], "over_limit"),
        ([(b"transfer-encoding", b"chunked")], "unknown_length"),
    ],
)
def test_body_that_cannot_be_held_counts_as_an_upload_at_its_headers(
    tmp_path: Path, headers: list[tuple[bytes, bytes]], found: str
) -> None:
    f = flow(content=None)
    for k, v in headers:
        f.request.headers[k.decode()] = v.decode()
    plan = _plan(tmp_path, f)
    assert plan.held is None
    assert plan.decision.action is Action.BLOCK
    assert plan.extra["upload"] == [found]


def test_body_over_the_hold_limit_counts_as_an_upload(tmp_path: Path) -> None:
    p = policy(tmp_path)
    rules = UploadRules(max_body=None, inspect_limit=uploads.HOLD_LIMIT * 4)
    f = flow(content=None)
    f.request.headers["content-length"] = str(uploads.HOLD_LIMIT + 1)
    principal = resolve_principal(p, "10.20.1.5")
    req = Request(host="www.facebook.com", method="POST")
    plan = uploads.plan_request(
        f, decide(p, req, principal, EVENING), rules,
        lambda: decide(p, Request(host=req.host, method="POST", upload=True), principal, EVENING),
        sni=None, hosts=(req.host,), extra={},
    )  # fmt: skip
    assert plan.extra["upload"] == ["too_large_to_inspect"]


@pytest.mark.parametrize(
    ("body", "ctype", "action", "found"),
    [
        (b"status=nice+day", "application/x-www-form-urlencoded", Action.ALLOW, None),
        (b"status=CONFIDENTIAL+memo", "application/x-www-form-urlencoded", Action.BLOCK,
         ["marker:confidential"]),
        (b"\x89PNG....", "image/png", Action.BLOCK, ["files:1"]),
    ],
)  # fmt: skip
def test_held_body_decides(tmp_path: Path, body: bytes, ctype: str, action: Action,
                           found: list[str] | None) -> None:  # fmt: skip
    f = flow(headers=[(b"content-type", ctype.encode())], content=body)
    plan = _plan(tmp_path, f)
    assert plan.held is not None
    decision, extra = asyncio.run(uploads.decide_held(f, plan.held, policy(tmp_path).uploads))
    assert decision.action is action
    assert extra.get("upload") == found


def test_sign_in_headers_replace_the_clients_and_only_on_sign_in_hosts(tmp_path: Path) -> None:
    accounts = policy(tmp_path, ACCOUNTS).accounts
    f = flow("GET", headers=[(b"X-GoogApps-Allowed-Domains", b"evil.org"),
                             (b"x-googapps-allowed-domains", b"consumer_accounts")])  # fmt: skip
    extra = uploads.restrict_sign_in(f, accounts, ("accounts.google.com",))
    assert f.request.headers.get_all("x-googapps-allowed-domains") == ["district.org"]
    assert extra == {"sign_in_restricted": ["X-GoogApps-Allowed-Domains"]}
    other = flow("GET")
    assert uploads.restrict_sign_in(other, accounts, ("www.example.org",)) == {}
    assert "x-googapps-allowed-domains" not in other.request.headers


@pytest.mark.parametrize(
    ("accounts", "verdict"), [("", ConnectionVerdict.PASS), (ACCOUNTS, ConnectionVerdict.INSPECT)]
)
def test_sign_in_host_is_inspected_only_when_accounts_is_set(
    tmp_path: Path, accounts: str, verdict: ConnectionVerdict
) -> None:
    p = policy(tmp_path, accounts)
    principal = resolve_principal(p, "10.20.1.5")
    assert decide_connection(p, "accounts.google.com", principal, EVENING).verdict is verdict
    assert decide_connection(p, "www.example.org", principal, EVENING).verdict is (
        ConnectionVerdict.PASS
    )


@pytest.mark.parametrize(
    ("length", "refused"),
    [
        (str(bodies.ANSWERED_BODY_LIMIT + 1), True),
        (str(bodies.ANSWERED_BODY_LIMIT), False),
        (None, True),
    ],
)
def test_blocked_request_with_a_large_body_is_closed_not_read(
    length: str | None, refused: bool
) -> None:
    from mitmproxy import http

    f = flow(content=None)
    f.live = True
    if length is None:
        f.request.http_version = "HTTP/2.0"  # a POST that declares no length
    else:
        f.request.headers["content-length"] = length
    f.response = http.Response.make(403, b"blocked")
    assert bodies.refuse_unread(f) is refused
    assert (f.response is None) is refused
    assert (f.error is not None and f.error.msg == f.error.KILLED_MESSAGE) is refused


def test_allowed_request_is_never_closed() -> None:
    f = flow(content=None)
    f.live = True
    f.request.headers["content-length"] = str(uploads.HOLD_LIMIT * 2)
    assert bodies.refuse_unread(f) is False
    assert f.error is None


def test_blocked_request_answered_after_its_body_is_not_streamed() -> None:
    from mitmproxy import http

    f = flow(content=b"x" * 1000)
    f.live = True
    f.request.stream = True  # as stream_large_bodies would have set it before the hook
    f.response = http.Response.make(403, b"blocked")
    assert bodies.refuse_unread(f) is False
    assert f.request.stream is False


@pytest.mark.parametrize("value", ["", "16m", "1g"])
def test_stream_large_bodies_at_or_above_the_hold_limit_is_accepted(value: str) -> None:
    uploads.require_stream_limit(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [("1m", "would stream uploads past"), ("lots", "stream_large_bodies: ")],
)
def test_stream_large_bodies_below_the_hold_limit_or_unreadable_is_refused(
    value: str, message: str
) -> None:
    from mitmproxy import exceptions

    with pytest.raises(exceptions.OptionsError, match=message):
        uploads.require_stream_limit(value)


def test_held_body_streamed_past_the_hold_fails_closed(tmp_path: Path) -> None:
    f = flow(headers=[(b"content-type", b"text/plain")], content=b"hello")
    f.live = True
    plan = _plan(tmp_path, f)
    assert plan.held is not None
    f.request.stream = True
    f.request.data.content = None  # what mitmproxy leaves after streaming a body
    decision, extra = asyncio.run(uploads.decide_held(f, plan.held, policy(tmp_path).uploads))
    assert decision.action is Action.BLOCK
    assert extra["upload"] == ["streamed_uninspected"]
    assert f.error is not None and f.error.msg == f.error.KILLED_MESSAGE
