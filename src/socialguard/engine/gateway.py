"""The gateway's own services: never reachable through the proxy unless the policy lists them.

Whatever listens on the gateway's loopback (the admin endpoint's /healthz and /metrics, a
resolver, a database) is out of the clients' reach on the network, and must stay so through the
proxy, which runs on that very machine. And the proxy's own listening sockets are never a
destination: connecting to itself, it would go on connecting to itself. A district that does want
a gateway service reachable lists it:

    gateway_services: ["127.0.0.1:8080", "::1"]     # ADDRESS:PORT, [IPv6]:PORT, ADDRESS or NETWORK

Destinations are judged as the client spelled them (normalised: `127.1`, `2130706433`,
`[::ffff:127.0.0.1]` and `LOCALHOST` are all loopback), before anything resolves or rewrites them.
"""

from __future__ import annotations

import ipaddress

from .hosts import is_ip_literal
from .model import Action, Basis, Decision, Principal, TraceStep

__all__ = [
    "GatewayService",
    "decide_gateway",
    "is_gateway_host",
    "parse_gateway_service",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A service clients may reach on the gateway: a network (one address or more) and a port (None: all)
GatewayService = tuple[IPNetwork, int | None]
# What `localhost` and its subdomains (RFC 6761) resolve to on the gateway
_LOCALHOST = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
_LISTENER_REASON = (
    "This address is the filter itself: a request through it to itself would loop, so it is "
    "refused."
)
_GATEWAY_REASON = (
    "This is a service on the filtering gateway itself, which is not reachable through the "
    "filter unless the district's policy lists it (gateway_services)."
)


def parse_gateway_service(text: str) -> GatewayService:
    """`127.0.0.1:8080`, `[::1]:8080`, `127.0.0.1`, `::1` or `127.0.0.0/8` → (network, port).

    Raises ValueError naming what is wrong.
    """
    raw = text.strip()
    port: int | None = None
    address = raw
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed '['")
        address, rest = raw[1:end], raw[end + 1 :]
        if rest:
            port = _port(rest, text)
    elif raw.count(":") == 1:
        address, _, rest = raw.partition(":")
        port = _port(":" + rest, text)
    try:
        network = ipaddress.ip_network(address, strict=True)
    except ValueError as e:
        raise ValueError(
            f"{text!r} is not ADDRESS, ADDRESS:PORT, [IPv6]:PORT or a network ({e})"
        ) from None
    return network, port


def _port(rest: str, text: str) -> int:
    digits = rest[1:]
    if not rest.startswith(":") or not digits.isdigit() or not 0 < int(digits) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return int(digits)


def is_gateway_host(host: str) -> bool:
    """Is this (normalised) host the gateway itself, whatever the network: loopback, the
    unspecified address (connecting to it reaches the local machine), or `localhost`?"""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if not is_ip_literal(host):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def decide_gateway(
    policy_version: str,
    services: tuple[GatewayService, ...],
    host: str,
    port: int,
    principal: Principal,
    *,
    listener: bool,
) -> Decision | None:
    """A block when `host:port` is on the gateway and not a listed service, else None (the rules
    decide). `listener`: the destination is one of the proxy's own listening sockets (the proxy
    knows its sockets; this module does not), refused whatever the policy lists."""
    if listener:
        return _refusal(policy_version, host, principal, _LISTENER_REASON, "the proxy itself")
    if not is_gateway_host(host):
        return None
    if _listed(services, host, port):
        return None
    return _refusal(policy_version, host, principal, _GATEWAY_REASON, "not in gateway_services")


def _listed(services: tuple[GatewayService, ...], host: str, port: int) -> bool:
    if not services:
        return False
    addresses = _LOCALHOST if not is_ip_literal(host) else (ipaddress.ip_address(host),)
    return any(
        addr.version == network.version and addr in network and want in (None, port)
        for network, want in services
        for addr in addresses
    )


def _refusal(
    policy_version: str, host: str, principal: Principal, reason: str, note: str
) -> Decision:
    return Decision(
        Action.BLOCK,
        Basis.DEFAULT,
        reason,
        principal,
        policy_version,
        host,
        trace=(TraceStep("gateway", f"block: {note}"),),
    )
