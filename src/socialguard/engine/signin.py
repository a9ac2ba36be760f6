"""The sign-in page's place in the policy: who must sign in, for which requests, and where to.

A device on a network the identity sources cover (`identity.networks`) that no source
identifies, where the policy says `unidentified: sign-in`, is sent to the proxy's own sign-in page
(`identity.sign_in.portal`) at its first request that some rule concerns. A site no rule mentions
(an operating system's update check, a weather page) is decided as before: sending those to a page
would break every device that joins the network without a person behind it. The page itself is
never blocked and never forwarded, whatever the rules say.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .compiled import CompiledPolicy
from .model import Action, Basis, Decision, Principal, TraceStep

__all__ = [
    "MAX_NEXT",
    "is_portal",
    "must_sign_in",
    "portal_decision",
    "safe_next",
    "sign_in_concerns",
    "sign_in_decision",
]

MAX_NEXT = 2048  # a `next` address longer than this is dropped (the person lands on the page)

_SIGN_IN_REASON = (
    "This network asks everyone to sign in before using sites the district's policy covers, so "
    "that the rules for your account (not for an unknown device) apply."
)


def is_portal(policy: CompiledPolicy, host: str) -> bool:
    """Is `host` (normalised) the sign-in page's name?"""
    portal = policy.identity.portal
    return portal is not None and host == portal


def must_sign_in(policy: CompiledPolicy, principal: Principal) -> bool:
    """Must this client sign in before a request a rule concerns? Only with a sign-in page, on a
    covered network, when the policy says unidentified devices sign in, and when no one (no
    identity source, proxy authentication or device inventory owner) names the person."""
    identity = policy.identity
    if identity.portal is None or identity.spec.unidentified != "sign-in":
        return False
    if principal.user is not None:
        return False
    return identity.covers(ipaddress.ip_address(principal.client_ip))


def sign_in_concerns(policy: CompiledPolicy, hosts: tuple[str, ...]) -> bool:
    """Does some rule concern one of `hosts` (the names of one request or connection)? Those are
    the requests an unidentified device is sent to the sign-in page for."""
    return any(policy.host_rules(h)[1] for h in hosts)


def sign_in_decision(policy: CompiledPolicy, principal: Principal, host: str) -> Decision:
    """The record of a request sent to the sign-in page: nothing reached the site."""
    return Decision(
        Action.BLOCK,
        Basis.SIGN_IN,
        _SIGN_IN_REASON,
        principal,
        policy.version,
        host,
        trace=(TraceStep("sign-in", "block: an unidentified device on a sign-in network"),),
        service=policy.service_of(host),
    )


def portal_decision(policy: CompiledPolicy, principal: Principal, host: str) -> Decision:
    """The record of a request to (or a connection for) the sign-in page: answered by the proxy,
    never forwarded, never blocked by a rule."""
    return Decision(
        Action.ALLOW,
        Basis.SIGN_IN,
        "The district's sign-in page, served by the proxy itself.",
        principal,
        policy.version,
        host,
        trace=(TraceStep("sign-in", "the sign-in page: answered by the proxy"),),
    )


def safe_next(url: str | None) -> str | None:
    """`url` if it is where a person may be sent after signing in (an absolute http(s) address
    with a host, no credentials, no control characters), else None. A page that redirects
    anywhere it is told would be an open redirect under the district's name."""
    if not url or len(url) > MAX_NEXT:
        return None
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return url
