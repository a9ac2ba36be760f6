"""Upload inspection and sign-in restrictions on the wire (issue 7): the request-body glue.

The engine answers "is this request allowed?" given `Request.upload`; the inspector
(`socialguard.engine.uploads`) answers "is this body an upload?". This module connects them to
mitmproxy's request life cycle, and adds the `accounts:` sign-in headers.

Which requests are inspected. In `requestheaders`, a request the rules allow is asked about a
second time as if it were an upload. Only when that answer is *block* (an `uploads: true` rule
names this destination for this person) and the request has a body is the body inspected. Every
other request is untouched by this module, except that its body is streamed
(`flow.request.stream = True`) so mitmproxy does not hold it in memory.

How the body is inspected: held, up to a cap, then decided before anything is forwarded. The
alternative, streaming the body through the inspector as it goes upstream, cannot block once a
verdict arrives late (a fingerprint is known only when the file ends): mitmproxy 12 has already
sent the request headers and part of the body to the origin, cannot kill a flow in transit
(mitmproxy/mitmproxy#4711), and cannot show a block page for it. Holding the body means the origin
sees nothing of a blocked upload and the person gets the block page (or a JSON 403 for XHR). Memory
stays bounded because only bodies of declared length up to `HOLD_LIMIT` (and the policy's
`inspect_limit`) are held; a body declared larger, or of unknown length (chunked), to a destination
where uploads are blocked is decided as an upload at its headers, without reading it: forms people
type are small, and a body too large to vouch for is treated as the multipart-too-long case is in
the inspector. The body is then scanned off the event loop, so other connections are not stalled.

Any request blocked at its headers with a body larger than a few KiB (or undeclared) has its
connection closed rather than answered (`bodies.refuse_unread`): mitmproxy would read the whole
body into memory before it could send the block page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from mitmproxy import exceptions, http
from mitmproxy.utils import human

from socialguard.engine.accounts import AccountsSpec, account_headers
from socialguard.engine.model import Action, Decision
from socialguard.engine.uploads import UploadRules, inspect_body

from .bodies import declared_length
from .budget import Reservation, UploadBudget

__all__ = [
    "BODY_METHODS",
    "HELD_KEY",
    "HELD_MEMORY_FULL",
    "HOLD_LIMIT",
    "HeadersPlan",
    "HeldUpload",
    "decide_held",
    "declared_length",
    "plan_request",
    "require_stream_limit",
    "restrict_sign_in",
]

log = structlog.get_logger(__name__)

HELD_KEY = "socialguard_upload"
HOLD_LIMIT = 16 * 1024 * 1024
"""Largest body held for inspection before forwarding (per request, so per-upload memory)."""
HELD_MEMORY_FULL = "held_memory_full"
"""The record's finding for an upload refused because held bodies already fill the budget."""
OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are inspected in a worker thread, off mitmproxy's event loop."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class HeldUpload:
    """A request whose body decides it: what to answer if it is an upload, and if it is not."""

    if_not: Decision
    if_upload: Decision
    sni: str | None
    hosts: tuple[str, ...]
    extra: Mapping[str, Any]
    reservation: Reservation | None = None  # its bytes in the shared budget, until inspected


@dataclass(frozen=True, slots=True)
class HeadersPlan:
    """What `requestheaders` does: record `decision` now (with `extra`), or hold the body."""

    decision: Decision
    extra: Mapping[str, Any]
    held: HeldUpload | None = None


def may_carry_body(headers: http.Headers, http_version: bytes, method: str) -> bool:
    """False exactly when `declared_length` would say 0 without reading a length: the request
    hook's shortcut past upload planning.

    A declared length (even 0) or a Transfer-Encoding is left to `plan_request`, which reads it.
    """
    if "content-length" in headers or "transfer-encoding" in headers:
        return True
    return not _bodiless_unless_declared(http_version, method)


def _bodiless_unless_declared(http_version: bytes, method: str) -> bool:
    """HTTP/1 without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3); HTTP/2
    and 3 may send one undeclared, but only the body methods do."""
    return http_version.startswith(b"HTTP/1") or method.upper() not in BODY_METHODS


def plan_request(
    flow: http.HTTPFlow,
    decision: Decision,
    rules: UploadRules,
    decide_as_upload: Callable[[], Decision],
    *,
    sni: str | None,
    hosts: tuple[str, ...],
    extra: Mapping[str, Any],
    budget: UploadBudget | None = None,
) -> HeadersPlan:
    """Decide what the body of an allowed request means, at its headers.

    `decide_as_upload` asks the engine the same question with `Request.upload=True`; it is called
    only for requests with a body, so the common GET costs nothing extra. A body to hold must fit
    in `budget` (shared by all held bodies); one that does not is decided as an upload now.
    """
    if decision.action is not Action.ALLOW:
        return HeadersPlan(decision, extra)
    length = declared_length(flow.request)
    if length == 0:
        return HeadersPlan(decision, extra)
    if_upload = decide_as_upload()
    if if_upload.action is not Action.BLOCK:
        flow.request.stream = True  # nothing to inspect: don't hold the body in memory
        return HeadersPlan(decision, extra)
    early = _findings_at_headers(length, rules)
    if early:
        log.info("upload_blocked_at_headers", host=if_upload.host, found=list(early))
        return HeadersPlan(if_upload, {**extra, "upload": list(early)})
    reservation = None
    if budget is not None:
        assert length is not None  # _findings_at_headers: an unknown length is decided above
        reservation = budget.reserve(length, owner=flow)
        if reservation is None:
            log.warning(
                "upload_memory_full", host=if_upload.host, size=length, held=budget.held,
                limit=budget.limit,
            )  # fmt: skip
            return HeadersPlan(if_upload, {**extra, "upload": [HELD_MEMORY_FULL]})
    flow.request.stream = False  # hold it (even if stream_large_bodies asked otherwise)
    held = HeldUpload(decision, if_upload, sni, hosts, dict(extra), reservation)
    return HeadersPlan(decision, extra, held)


def _findings_at_headers(length: int | None, rules: UploadRules) -> tuple[str, ...]:
    """Why the body counts as an upload before it is read, or () when it must be inspected."""
    if length is None:
        return ("unknown_length",)
    if rules.max_body is not None and length > rules.max_body:
        return ("over_limit",)
    if length > min(HOLD_LIMIT, rules.inspect_limit):
        return ("too_large_to_inspect",)
    return ()


async def decide_held(
    flow: http.HTTPFlow, held: HeldUpload, rules: UploadRules
) -> tuple[Decision, dict[str, Any]]:
    """The whole (held) body is in: inspect it and choose between the two answers.

    Returns the decision to record and apply, and the record's extra fields; `upload` lists what
    was found by name (`marker:NAME`, `fingerprint:LABEL`, `files:N`), never the content.
    """
    if flow.request.raw_content is None:
        # Streamed past the hold (only a misconfigured stream_large_bodies can do that): fail
        # closed. The block page can no longer be sent; killing the flow drops the answer.
        log.error("held_upload_streamed", host=held.if_upload.host)
        if flow.killable:
            flow.kill()
        return held.if_upload, {**held.extra, "upload": ["streamed_uninspected"]}
    body = flow.request.raw_content
    content_type = flow.request.headers.get("content-type")
    encoding = flow.request.headers.get("content-encoding")
    if len(body) > OFF_LOOP_BYTES:
        report = await asyncio.to_thread(inspect_body, rules, content_type, body, 65536, encoding)
    else:
        report = inspect_body(rules, content_type, body, content_encoding=encoding)
    extra = dict(held.extra)
    if not report.is_upload:
        return held.if_not, extra
    found = list(report.findings())
    extra["upload"] = found
    log.info("upload_found", host=held.if_upload.host, found=found, size=report.size)
    return held.if_upload, extra


def require_stream_limit(stream_large_bodies: str | None) -> None:
    """Refuse a `stream_large_bodies` below `HOLD_LIMIT` (raises OptionsError).

    mitmproxy re-checks that limit while it reads a body and switches to streaming past it,
    whatever the addon asked: a held upload would then go to the origin uninspected, and a
    request answered with the block page would fail. At or above the hold limit it only streams
    bodies socialguard does not hold (and responses), which is what it is for.
    """
    try:
        limit = human.parse_size(stream_large_bodies or None)
    except ValueError as e:
        raise exceptions.OptionsError(f"stream_large_bodies: {e}") from e
    if limit is not None and limit < HOLD_LIMIT:
        raise exceptions.OptionsError(
            f"stream_large_bodies={stream_large_bodies} would stream uploads past socialguard's "
            f"inspection: leave it unset or set it to at least {HOLD_LIMIT // (1024 * 1024)}m"
        )


def restrict_sign_in(
    flow: http.HTTPFlow, accounts: AccountsSpec | None, hosts: Iterable[str]
) -> dict[str, Any]:
    """Set the vendors' sign-in restriction headers on requests to their sign-in hosts.

    Replaces whatever the client sent under those names (a client must not widen its own
    allow-list), and returns the record's extra field naming the headers set (never their values'
    source: the values are the district's own configuration).
    """
    wanted: dict[str, str] = {}
    for host in hosts:
        wanted.update(account_headers(accounts, host))
    if not wanted:
        return {}
    for name, value in wanted.items():
        flow.request.headers[name] = value  # assignment replaces every existing field of that name
    return {"sign_in_restricted": sorted(wanted)}
