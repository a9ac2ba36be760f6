"""What a blocked person (or their browser's scripts) receives: a page, a short JSON or a line of
text.

Pure functions, no mitmproxy: the addon gathers the facts into a `BlockNotice`, asks
`choose_format` what fits the request, and `render` returns the status, content type and body. A
page navigation gets the self-contained HTML page (no external assets: the network it would load
them over is the one blocking it); an XHR/fetch gets JSON its code can show; an image, script or
WebSocket upgrade gets a short text/plain 403, since HTML there would only be noise.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from .pagekit import STYLE, Brand, contact_block

BLOCK_STATUS = 403

# Sec-Fetch-Dest values that load a whole document a person will look at.
_DOCUMENT_DESTS = frozenset({"document", "iframe", "frame", "embed", "object", "fencedframe"})


class BlockFormat(StrEnum):
    HTML = "html"
    JSON = "json"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class BlockNotice:
    """Everything the person is told about one blocked request."""

    host: str
    reason: str
    reference: str  # the decision id, as in the decision log
    time: str  # already formatted in the district's local time
    district: str
    rule: str | None = None
    category: str | None = None
    who: str = "unknown"  # who the proxy took the person to be
    contact: str | None = None
    policy_url: str | None = None
    bypass_html: str = ""  # trusted HTML fragment from the overrides forms (already escaped there)
    service: str | None = None  # the service's name people know ("Facebook"), if the host has one
    answer_html: str = ""  # trusted HTML: the person's own access request (request_status.py)


@dataclass(frozen=True, slots=True)
class BlockResponse:
    status: int
    content_type: str
    body: bytes


def format_for(headers: Any) -> BlockFormat:
    """`choose_format` for a request's headers (mitmproxy's `Headers`): the one reading of them
    that the block page and the sign-in redirect share."""
    return choose_format(
        accept=headers.get("accept", ""),
        sec_fetch_dest=headers.get("sec-fetch-dest", ""),
        sec_fetch_mode=headers.get("sec-fetch-mode", ""),
        upgrade=headers.get("upgrade", ""),
    )


def choose_format(
    *,
    accept: str = "",
    sec_fetch_dest: str = "",
    sec_fetch_mode: str = "",
    upgrade: str = "",
) -> BlockFormat:
    """Pick the body that fits the request: HTML only for what a browser shows as a page."""
    if upgrade:
        return BlockFormat.TEXT
    dest = sec_fetch_dest.strip().lower()
    mode = sec_fetch_mode.strip().lower()
    wants = accept.lower()
    if mode == "navigate" or dest in _DOCUMENT_DESTS:
        return BlockFormat.HTML
    if dest == "empty" or mode in {"cors", "same-origin"}:
        return (
            BlockFormat.TEXT if "text/plain" in wants and "json" not in wants else BlockFormat.JSON
        )
    if dest:  # image, script, style, font, audio, video, worker, ...
        return BlockFormat.TEXT
    # No Fetch Metadata (older browsers, command-line clients): go by Accept.
    if "text/html" in wants or "application/xhtml+xml" in wants:
        return BlockFormat.HTML
    if "json" in wants:
        return BlockFormat.JSON
    return BlockFormat.TEXT


def render(notice: BlockNotice, fmt: BlockFormat) -> BlockResponse:
    """The 403 for `notice` in format `fmt`."""
    if fmt is BlockFormat.HTML:
        return BlockResponse(BLOCK_STATUS, "text/html; charset=utf-8", _html(notice).encode())
    if fmt is BlockFormat.JSON:
        return BlockResponse(BLOCK_STATUS, "application/json", _json(notice).encode())
    return BlockResponse(BLOCK_STATUS, "text/plain; charset=utf-8", _text(notice).encode())


def _json(n: BlockNotice) -> str:
    body = {
        "blocked": True,
        "service": n.service,
        "host": n.host,
        "reason": n.reason,
        "rule": n.rule,
        "category": n.category,
        "reference": n.reference,
        "time": n.time,
        "contact": n.contact,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _text(n: BlockNotice) -> str:
    what = f"{n.service} ({n.host})" if n.service else n.host
    lines = [f"Blocked by {n.district}: {what}", n.reason, f"Reference: {n.reference} ({n.time})"]
    if n.rule:
        lines.insert(2, f"Rule: {n.rule}")
    if n.contact:
        lines.append(f"Contact: {n.contact}")
    return "\n".join(lines) + "\n"


@cache
def _template() -> Template:
    text = (
        resources.files("socialguard.proxy").joinpath("templates/blockpage.html").read_text("utf-8")
    )
    return Template(text)


def _html(n: BlockNotice) -> str:
    e = html.escape
    if n.policy_url and n.policy_url.startswith(("https://", "http://")):
        policy_link = f'<a href="{e(n.policy_url)}">Read the board policy</a>'
    else:
        policy_link = "See the district's board policy on social networking."
    choices = (
        '<div class="card choices"><h2>Other choices</h2>' + n.bypass_html + "</div>"
        if n.bypass_html
        else ""
    )
    brand = Brand(n.district, n.contact, n.policy_url)
    return _template().substitute(
        style=STYLE,
        what=e(n.service) if n.service else "This site",
        host=e(n.host),
        district=e(n.district),
        reason=e(n.reason),
        rule=e(n.rule or "default policy"),
        category=e(n.category or "—"),
        time=e(n.time),
        reference=e(n.reference),
        who=e(n.who),
        contact_block=contact_block(brand, n.reference, heading="Whom to contact"),
        policy_link=policy_link,
        answer=n.answer_html,
        choices=choices,
    )
