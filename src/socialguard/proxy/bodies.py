"""Which message bodies the proxy holds in memory, and which it never reads (issue 17, item 3).

The filter needs no response body, and of request bodies only those an upload rule asks about
(`uploads.py`, under the shared `UploadBudget`). Everything else is kept out of memory:

- Responses stream to the client as they arrive (the addon's `responseheaders`): mitmproxy would
  otherwise buffer a whole response, however large or slow, before sending its first byte.
- A request the rules allow, with a body nobody inspects, streams to the origin
  (`uploads.plan_request`).
- A request the proxy answers itself (block page, 407, a fault) is answered only when its body is
  at most `ANSWERED_BODY_LIMIT`: mitmproxy 12 sends an addon's answer only once it has read the
  whole request body into memory, and offers no way to answer at the headers. A larger or
  undeclared body is refused unread instead (`refuse_unread`): the connection (or HTTP/2 stream)
  is closed at the headers, and the decision log says so (`answer: refused_unread`).
- The block page's forms take at most `FORM_BODY_LIMIT` (a token and a reason are a few hundred
  bytes); a larger or undeclared body is refused unread the same way.
"""

from __future__ import annotations

import structlog
from mitmproxy import connection, ctx, http

from .forms import MAX_BODY

__all__ = [
    "ANSWERED_BODY_LIMIT",
    "FORM_BODY_LIMIT",
    "REFUSED_UNREAD",
    "close_client_transport",
    "close_unread",
    "declared_length",
    "fits",
    "refuse_unread",
]

log = structlog.get_logger(__name__)

ANSWERED_BODY_LIMIT = 8 * 1024
"""Largest request body read before the proxy answers the request itself (block page, 407)."""
FORM_BODY_LIMIT = MAX_BODY
"""Largest body of a block-page form submission (a token and a reason of at most 500 chars)."""
REFUSED_UNREAD = "refused_unread"
"""The record's `answer` field for a request closed at its headers, its body never read."""
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


def declared_length(request: http.Request) -> int | None:
    """The body's length as its headers declare it: bytes, or None when it is not known.

    HTTP/1 without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3); HTTP/2 and 3
    may send a body without declaring it, so a method that carries bodies counts as unknown there.
    """
    lengths: list[bytes] = []
    for name, value in request.data.headers.fields:  # one pass: this runs for every upload
        lname = name.lower()
        if lname == b"transfer-encoding":
            return None
        if lname == b"content-length":
            lengths.append(value)
    if lengths:
        raw = b", ".join(lengths).decode("utf-8", "surrogateescape")  # as Headers.get folds
        try:
            length = int(raw.strip())
        except ValueError:
            return None
        return length if length >= 0 else None
    data = request.data
    if data.http_version.startswith(b"HTTP/1") or data.method.upper() not in _BODY_METHODS:
        return 0
    return None


def fits(request: http.Request, limit: int) -> bool:
    """Is the body declared, and at most `limit` bytes (so reading it costs at most that)?"""
    length = declared_length(request)
    return length is not None and length <= limit


def refuse_unread(flow: http.HTTPFlow, *, limit: int = ANSWERED_BODY_LIMIT) -> bool:
    """Close the request instead of answering it when its body is over `limit` or undeclared.

    For a request the proxy answers itself (`flow.response` set at its headers). Returns True
    when it closed it: the answer is dropped, the body never read. Otherwise the (small) body is
    read and the answer sent, and the request is kept from streaming (mitmproxy cannot stream a
    request it answers).
    """
    if flow.response is None or not flow.live:
        return False
    if fits(flow.request, limit):
        flow.request.stream = False
        return False
    close_unread(flow, limit)
    return True


def close_unread(flow: http.HTTPFlow, limit: int) -> None:
    """Close the request (its HTTP/2 stream, or its HTTP/1 connection) without reading its body
    and without an answer (mitmproxy could send one only after reading the body)."""
    flow.response = None
    if flow.killable:
        flow.kill()
    log.info(
        "body_refused_unread",
        host=flow.request.pretty_host,
        declared=declared_length(flow.request),
        limit=limit,
    )


def close_client_transport(client: connection.Client) -> None:
    """Close a finished client connection's socket if mitmproxy left it open.

    mitmproxy 12.3 closes a connection by cancelling its reader task; when that task is waiting to
    hand the client's next bytes to the proxy (a client still sending a body the proxy refused),
    the cancellation skips the socket's close: the client is never told and the descriptor stays
    open until garbage collection. Called from `client_disconnected`, when nothing else will use
    the socket.
    """
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
    io = handler.transports.get(client) if handler is not None else None
    writer = getattr(io, "writer", None)
    try:
        if writer is not None and not writer.is_closing():
            writer.close()
    except (AttributeError, OSError):  # a WireGuard/UDP stream, or a socket already gone
        pass
