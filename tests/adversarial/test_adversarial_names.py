"""Every name a request carries is decided (issue 17, item 5).

Inside a CONNECT tunnel the request line may carry its own authority (`GET http://host/`): origins
and CDNs route on it, so it is a name like the Host header, the tunnel's target and the SNI.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import tunnel  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e


def _ask(proxy: Any, target: str, request: bytes) -> bytes:
    with tunnel(proxy, target) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer and len(answer) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def test_an_absolute_form_target_inside_a_tunnel_is_decided(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    answer = _ask(
        proxy,
        "www.example.org:80",
        b"GET http://www.facebook.com/feed HTTP/1.1\r\nHost: www.example.org\r\n"
        b"Accept: text/html\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert not origin.saw(b"/feed")
    [record] = [r for r in proxy.records() if r.get("type") == "decision"]
    assert (record["action"], record["host"]) == ("block", "www.facebook.com")
    assert set(record["hosts"]) == {"www.facebook.com", "www.example.org"}


def test_a_tunnel_request_naming_only_allowed_hosts_goes_through(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    answer = _ask(
        proxy,
        "www.example.org:80",
        b"GET http://www.example.org/fine HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert origin.saw(b"/fine")
