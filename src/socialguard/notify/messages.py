"""What a notice says: a subject and plain text for mail, and the JSON each webhook format reads.

Everything a person typed (a reason) or a site named is data here, never markup: mail is plain
text, Slack text has `&`, `<` and `>` escaped (so a reason cannot ping `<!channel>` or hide a
link), Teams text has its Markdown characters escaped, and headers lose line breaks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from socialguard.engine.notifications import Notice

MAX_TEXT = 2000  # a reason is at most 500 characters; rules errors are cut here

TITLES = {
    "request_filed": "Access request",
    "emergency_declared": "Emergency declared",
    "request_approved": "Access request approved",
    "request_denied": "Access request denied",
    "grant_ending": "Access ending soon",
    "emergency_ending": "Emergency ending soon",
    "rules_rejected": "Rules file rejected",
}


@dataclass(frozen=True, slots=True)
class Message:
    """A notice in words: `title` (a mail subject), `lines` (the facts, one a line), and where
    to act (`action`: the command an administrator runs)."""

    title: str
    lines: tuple[str, ...]
    action: str | None = None

    def text(self) -> str:
        parts = list(self.lines)
        if self.action:
            parts += ["", self.action]
        return "\n".join(parts)


def _local(text: Any, zone: ZoneInfo) -> str:
    try:
        return datetime.fromisoformat(str(text)).astimezone(zone).strftime("%a %-d %b %H:%M %Z")
    except ValueError:
        return str(text)


def _one_line(text: Any, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _sites(facts: Mapping[str, Any]) -> str:
    sites = facts.get("sites")
    if sites:
        return ", ".join(str(s) for s in sites)
    return str(facts.get("site") or "every site")


def describe(notice: Notice, district: str, zone: ZoneInfo) -> Message:
    """The words for `notice`, times in the district's zone."""
    f = notice.facts
    person = notice.person or "someone"
    kind = notice.kind
    title = TITLES.get(kind, kind)
    lines: list[str] = []
    action = None
    if kind == "request_filed":
        title = f"{title}: {person} asks for {_one_line(f.get('site'))}"
        lines = [
            f"{person} asks for access to {f.get('site')}.",
            f"Reason: {f.get('reason')}",
            f"Page: {f.get('url')}",
            f"From: {f.get('source')}  Request: {f.get('request_id')}",
            f"Filed: {_local(f.get('at'), zone)}",
        ]
        rid = f.get("request_id")
        action = (
            f"Answer with: socialguard grant approve {rid} --until HH:MM"
            f"  (or: socialguard grant deny {rid} --reason ...)"
        )
    elif kind == "emergency_declared":
        title = f"{title}: {person} opened {_one_line(f.get('site'))}"
        lines = [
            f"{person} declared an emergency and opened {f.get('site')} "
            f"until {_local(f.get('ends'), zone)}.",
            f"Reason: {f.get('reason')}",
            f"Page: {f.get('url')}",
            f"From: {f.get('source')}  Emergency: {f.get('emergency_id')}"
            f"  ({f.get('used_today')} of {f.get('per_day')} today)",
        ]
        action = f"Review with: socialguard emergency ack {f.get('emergency_id')}"
    elif kind == "request_approved":
        title = f"{title}: {_one_line(f.get('site'))} until {_local(f.get('ends'), zone)}"
        lines = [
            f"Your request for {f.get('site')} was approved by {f.get('by')}.",
            f"You may use it until {_local(f.get('ends'), zone)}.",
            f"Note: {f.get('reason')}",
            f"Request: {f.get('request_id')}  Grant: {f.get('grant_id')}",
        ]
    elif kind == "request_denied":
        title = f"{title}: {_one_line(f.get('site'))}"
        lines = [
            f"Your request for {f.get('site')} was denied by {f.get('by')}.",
            f"Reason: {f.get('reason')}",
            f"Request: {f.get('request_id')}",
        ]
    elif kind in ("grant_ending", "emergency_ending"):
        what = "Access" if kind == "grant_ending" else "The emergency opening"
        title = f"{title}: {_one_line(_sites(f))} at {_local(f.get('ends'), zone)}"
        ident = f.get("grant_id") or f.get("emergency_id")
        lines = [
            f"{what} to {_sites(f)} for {person if notice.person else f.get('scope', '')} ends "
            f"at {_local(f.get('ends'), zone)}.",
            f"Reason it was given: {f.get('reason')}  (by {f.get('by')}; {ident})",
        ]
    elif kind == "rules_rejected":
        errors = [str(e) for e in f.get("errors", [])]
        title = f"{title}: {f.get('rules')} (version {f.get('kept_version')} stays in force)"
        lines = [
            f"The proxy refused the changed rules file {f.get('rules')}; the version in force "
            f"({f.get('kept_version')}) keeps running.",
            *errors[:20],
        ]
        if len(errors) > 20:
            lines.append(f"... and {len(errors) - 20} more")
        action = "Check it with: socialguard rules check"
    lines = [line[:MAX_TEXT] for line in lines]
    return Message(f"[{_one_line(district, 80)}] {_one_line(title, 200)}", tuple(lines), action)


# -- webhook payloads ---------------------------------------------------------------------------


def generic_payload(notice: Notice, message: Message, event_id: str) -> dict[str, Any]:
    """The generic format: the notice's data for a program, and its words for a person."""
    return {
        "event_id": event_id,
        "kind": notice.kind,
        "person": notice.person,
        "groups": list(notice.groups),
        "facts": dict(notice.facts),
        "title": message.title,
        "text": message.text(),
    }


def slack_escape(text: str) -> str:
    """Slack's three control characters (its "Escaping text" rules)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message) -> dict[str, Any]:
    """A Slack incoming-webhook message: `{"text": ...}` (mrkdwn, the title in bold)."""
    body = "\n".join(slack_escape(line) for line in message.text().splitlines())
    return {"text": f"*{slack_escape(message.title)}*\n{body}"}


_TEAMS_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def teams_escape(text: str) -> str:
    """Backslash every Markdown character Teams' TextBlock would act on."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


def teams_payload(message: Message) -> dict[str, Any]:
    """A message with one Adaptive Card, as Teams incoming webhooks and Workflows
    ("When a Teams webhook request is received") accept it."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": teams_escape(message.title), "weight": "Bolder",
         "size": "Medium", "wrap": True},
    ]  # fmt: skip
    body += [
        {"type": "TextBlock", "text": teams_escape(line), "wrap": True, "spacing": "Small"}
        for line in message.lines
    ]
    if message.action:
        body.append(
            {"type": "TextBlock", "text": teams_escape(message.action), "wrap": True,
             "fontType": "Monospace", "isSubtle": True}
        )  # fmt: skip
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }
