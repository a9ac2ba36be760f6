"""The request hook skips upload planning only for requests that `declared_length` says carry
no body: the shortcut may never let a body past the upload rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.test import tutils

from socialguard.proxy.uploads import declared_length, may_carry_body

_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [b"Content-Length", b"content-length", b"Transfer-Encoding", b"Accept", b"Host"]
        ),
        st.sampled_from([b"0", b"12", b"chunked", b"x", b""]),
    ),
    max_size=4,
)


@given(
    headers=_HEADERS,
    method=st.sampled_from(["GET", "HEAD", "POST", "put", "PATCH", "DELETE", "OPTIONS"]),
    version=st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3"]),
)
def test_no_body_by_the_shortcut_means_no_body_by_declared_length(
    headers: list[tuple[bytes, bytes]], method: str, version: str
) -> None:
    req = tutils.treq(method=method.encode(), http_version=version.encode(), headers=headers)
    if not may_carry_body(req.headers, req.data.http_version, req.method):
        assert declared_length(req) == 0


def test_the_shortcut_is_taken_for_a_plain_get_and_not_for_a_post() -> None:
    get = tutils.treq(method=b"GET", headers=[(b"Host", b"a.example")])
    post = tutils.treq(method=b"POST", headers=[(b"Content-Length", b"3")])
    h2_post = tutils.treq(method=b"POST", http_version=b"HTTP/2.0", headers=[])
    for req, carries in ((get, False), (post, True), (h2_post, True)):
        assert may_carry_body(req.headers, req.data.http_version, req.method) is carries
