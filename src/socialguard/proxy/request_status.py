"""The block page's word on the person's own access request: pending, approved until when, or
denied with the administrator's reason.

Read from the answers snapshot the overrides refresher keeps (overrides/answers.py), never from
the store: the block page is served on the event loop. The key is the one the page's form files
under (the person key and the blocked site), so nobody is shown another person's request.
"""

from __future__ import annotations

import html
from datetime import datetime, tzinfo
from typing import Any

from socialguard.engine.hosts import domain_suffixes
from socialguard.engine.limits import person_key
from socialguard.engine.model import Decision
from socialguard.overrides.answers import RequestAnswer, RequestAnswers

__all__ = ["answer_for", "answer_html", "block_page_answer"]


def answer_for(answers: RequestAnswers | None, decision: Decision) -> RequestAnswer | None:
    """This person's latest request for this site (as the form files it: the matched domain, or
    the host or a domain above it, so a request made on facebook.com answers on its pages too)."""
    if answers is None or not answers.by_key:
        return None
    who = person_key(decision.principal)
    sites = [decision.matched_domain] if decision.matched_domain else []
    sites.extend(domain_suffixes(decision.host))
    found = [a for a in (answers.latest(who, s) for s in sites) if a is not None]
    return max(found, key=lambda a: (a.filed, a.id)) if found else None


def answer_html(a: RequestAnswer, *, now: datetime, zone: tzinfo) -> str:
    """A card for the block page (escaped here: the note is an administrator's free text)."""
    e = html.escape
    ref = f'<span class="ref">{e(a.id)}</span>'
    if a.status == "pending":
        text = (
            f"You asked for access at {e(_clock(a.filed, zone, now))} ({ref}). "
            "It is waiting for an answer from administration."
        )
    elif a.status == "approved" and a.ends is not None:
        until = e(_clock(a.ends, zone, now))
        if a.revoked:
            text = (
                f"Your request ({ref}) was approved until {until}, but that access was withdrawn."
            )
        elif a.ends <= now:
            text = f"Your request ({ref}) was approved until {until}; that access has ended."
        else:
            text = (
                f"Your request ({ref}) was approved until {until}. This page still appeared "
                "because another rule applies here; quote the reference below to administration."
            )
    elif a.status == "denied":
        why = f": {e(a.note)}" if a.note else "."
        text = f"Your request ({ref}) was denied{why}"
    else:
        return ""
    return (
        '<div class="card answer" role="status"><h2>Your request for access</h2>'
        f"<p>{text}</p></div>"
    )


def block_page_answer(refresher: Any, decision: Decision, *, now: datetime, zone: tzinfo) -> str:
    """The card for this block page, or "" (no refresher, no request)."""
    a = answer_for(getattr(refresher, "answers", None), decision)
    return answer_html(a, now=now, zone=zone) if a is not None else ""


def _clock(when: datetime, zone: tzinfo, now: datetime) -> str:
    """14:00 MST today; with the date on any other day."""
    local, today = when.astimezone(zone), now.astimezone(zone)
    if local.date() == today.date():
        return local.strftime("%H:%M %Z")
    return local.strftime("%H:%M %Z on %-d %b")
