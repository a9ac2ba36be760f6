"""Every name a request is addressed by, as the engine decides them (issue 17, item 5).

An origin or CDN may route a request on any of the names it carries, so each is decided and the
strictest answer wins: the request line's own authority (HTTP/2's `:authority`, and an
absolute-form target `GET http://host/` inside a tunnel or in transparent mode, which mitmproxy
forwards as it came), every Host header, the target the explicit proxy was asked for (its CONNECT
target inside a tunnel), and the connection's SNI. Transparent mode's original destination is an
address, not a name: it stands in only when the request names nothing else (network rules decide
it besides, see addon._network_refusal).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from mitmproxy.http import Headers

from socialguard.engine import normalise_host

__all__ = ["is_ip", "normalised", "request_names"]


def request_names(
    headers: Headers, data: Any, *, explicit: bool, sni: str | None
) -> tuple[str, ...]:
    """The request's names, normalised, the request line's authority or Host first.

    `headers` are the request's (every Host field counts), `data` its mitmproxy RequestData.
    Raises ValueError when a name cannot be normalised, or when there is none.
    """
    names: list[str] = []
    if data.authority:
        names.append(normalised(_text(data.authority)))
    names.extend(normalised(host) for host in headers.get_all("host"))
    dest = data.host
    if dest and (explicit or not is_ip(dest) or not names):
        names.append(normalised(dest))
    if sni:
        names.append(sni)
    if not names:
        raise ValueError("request carries no host name")
    if len(names) == 1:
        return (names[0],)
    return tuple(dict.fromkeys(names))


@functools.lru_cache(maxsize=65536)
def normalised(raw: str) -> str:
    """engine.normalise_host, remembered: the same host names arrive over and over (pure, so safe).

    Raises ValueError for a name that cannot be normalised (not cached: lru_cache keeps no errors).
    """
    return normalise_host(raw)


@functools.lru_cache(maxsize=65536)
def is_ip(host: str) -> bool:
    """Is this target an IP literal (transparent mode's original destination, CONNECT to an IP)?"""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _text(raw: bytes) -> str:
    """Header bytes as mitmproxy's `Headers` decodes them."""
    return raw.decode("utf-8", "surrogateescape")
