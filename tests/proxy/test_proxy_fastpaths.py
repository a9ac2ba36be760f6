"""The addon's shortcuts around mitmproxy's slower helpers give exactly what the helpers give.

The request hook reads the method, scheme and form-path prefix from mitmproxy's raw bytes, and
builds its 403s without `Response.make`'s per-call type check; `declared_length` scans the fields
once. Each is compared here with the mitmproxy API it stands in for.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from socialguard.proxy import addon as addon_module
from socialguard.proxy import uploads
from socialguard.proxy.addon import make_response
from socialguard.proxy.forms import PREFIX, is_form_path


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (403, b"blocked\n", {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "x"}),
        (403, "<p>Bloqué</p>".encode(), {"Content-Type": "text/html", "X-SocialGuard-Ref": "AB"}),
        (407, b"", {"Proxy-Authenticate": 'Basic realm="socialguard"'}),
        (200, b"ok", {}),
    ],
)  # fmt: skip
def test_make_response_equals_mitmproxys_make(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    ours, theirs = make_response(status, body, headers), http.Response.make(status, body, headers)
    a, b = ours.get_state(), theirs.get_state()
    for state in (a, b):
        state.pop("timestamp_start")
        state.pop("timestamp_end")
    assert a == b
    assert ours.timestamp_start > 0 and ours.timestamp_end is not None


def test_responses_made_in_turn_share_nothing() -> None:
    first = make_response(403, b"one", {"X-A": "1"})
    second = make_response(403, b"two", {"X-A": "2"})
    first.headers["X-A"] = "changed"
    assert (second.headers["X-A"], second.content) == ("2", b"two")
    assert make_response(403, b"three", {}).headers.get("X-A") is None


def _old_declared_length(request: Any) -> int | None:
    """The header-lookup version `declared_length` replaced, as the reference."""
    headers = request.headers
    if "transfer-encoding" in headers:
        return None
    raw = headers.get("content-length")
    if raw is not None:
        try:
            length = int(raw.strip())
        except ValueError:
            return None
        return length if length >= 0 else None
    if (
        request.http_version.startswith("HTTP/1")
        or request.method.upper() not in uploads.BODY_METHODS
    ):
        return 0
    return None


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [(b"Content-Length", b"42")],
        [(b"content-length", b" 7 ")],
        [(b"Content-Length", b"5"), (b"Content-Length", b"5")],  # repeated: not a number
        [(b"Content-Length", b"-3")],
        [(b"Content-Length", b"lots")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"9")],
        [(b"TRANSFER-ENCODING", b"gzip")],
    ],
)
@pytest.mark.parametrize(
    ("method", "version"), [("POST", "HTTP/1.1"), ("POST", "HTTP/2.0"), ("GET", "HTTP/2.0")]
)
def test_declared_length_answers_as_the_header_lookups_did(
    fields: list[tuple[bytes, bytes]], method: str, version: str
) -> None:
    req = tutils.treq(method=method.encode(), headers=fields, content=None)
    req.http_version = version
    flow = tflow.tflow(req=req)
    assert uploads.declared_length(flow.request) == _old_declared_length(flow.request)


@pytest.mark.parametrize(
    "raw", [*addon_module._METHODS, b"get", b"Post", b"PROPFIND", b"M\xc3\xa9"]
)
def test_the_method_text_the_request_hook_reads_is_mitmproxys(raw: bytes) -> None:
    """The hook takes a method's text from a table of the common raw values, else from
    mitmproxy's `method` property (which upper-cases): either way the property's answer."""
    req = tutils.treq(method=raw)
    assert (addon_module._METHODS.get(req.data.method) or req.method) == req.method


@pytest.mark.parametrize("raw", [*addon_module._SCHEMES, b"HTTP", b"ws"])
def test_the_scheme_text_the_request_hook_reads_is_mitmproxys(raw: bytes) -> None:
    req = tutils.treq(scheme=raw)
    assert (addon_module._SCHEMES.get(req.data.scheme) or req.scheme) == req.scheme


@given(
    path=st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from([PREFIX, PREFIX[:-1], PREFIX.upper(), "/x" + PREFIX, "?" + PREFIX]),
            st.text(max_size=12),
        ),
    )
)
def test_the_form_path_check_on_raw_bytes_equals_is_form_path(path: str) -> None:
    """The hook checks mitmproxy's raw path bytes against the prefix; `is_form_path` is the rule."""
    raw = path.encode("utf-8", "surrogateescape")
    assert raw.startswith(addon_module._FORM_PREFIX) == is_form_path(path)
