"""The auditor's summary: what was blocked, when, for whom; which exceptions were used and why.

`summarise()` folds a stream of records into a `Summary` in one pass (counters only, so memory grows
with the number of distinct people and sites, not records). `render_text()` prints it;
`render_html()` makes one self-contained HTML file with inline SVG charts for a board meeting: no
scripts, no external fonts, styles or images.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from socialguard.text import clip, printable

from .reader import Found, local_time, outcome
from .schema import TYPE_ADMIN, TYPE_DECISION

TYPE_FORM = "form"  # the block page's forms, as the proxy writes them (proxy/addon.py)
# A form's outcomes that gave the person nothing: the board sees these as refused submissions
_REFUSED_OUTCOMES = frozenset({"refused", "limit_reached", "invalid", "bad_method", "not_found"})

TOP = 15


@dataclass(slots=True)
class AdminEntry:
    """One administrator action worth listing (an emergency, a self-declared emergency)."""

    when: str
    action: str
    by: str
    target: str
    reason: str
    details: dict[str, Any]
    # the sites it concerns as people read them (`www.facebook.com (all of Facebook)`), or
    # `every site` for an emergency without sites; "" for an event that names none
    opens: str = ""


@dataclass(slots=True)
class RequestRow:
    """One access request from the block page, and its answer if it had one."""

    id: str
    filed: datetime
    who: str
    site: str
    reason: str
    status: str = "pending"
    answered: datetime | None = None
    answered_by: str = ""
    grant_id: str = ""

    @property
    def time_to_answer(self) -> str:
        if self.answered is None:
            return ""
        minutes = int((self.answered - self.filed).total_seconds() // 60)
        return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


@dataclass(slots=True)
class EmergencyRow:
    """One emergency, from start to end and review: a self-declared one or one an administrator
    started."""

    id: str
    start: str
    who: str
    scope: str
    reason: str
    self_declared: bool
    site: str = ""
    end: str = ""
    review: str = ""


@dataclass(slots=True)
class RefusedForm:
    when: str
    form: str
    outcome: str
    why: str
    who: str
    site: str


@dataclass(slots=True)
class Summary:
    """Counts over a period, in the district's zone."""

    zone: str
    since: str | None = None
    until: str | None = None
    decisions: int = 0
    allowed: int = 0
    blocked: int = 0
    blocked_by_day: Counter[str] = field(default_factory=Counter)
    blocked_by_hour: Counter[int] = field(default_factory=Counter)
    blocked_by_group: Counter[str] = field(default_factory=Counter)  # in each of its groups
    # Each blocked request once, under the person's most specific group(s) (see own_groups):
    # these rows add up to `blocked`, where a group included in another would double count.
    blocked_by_own_group: Counter[str] = field(default_factory=Counter)
    # group → itself and every group including it (the rules' nesting); empty: not known
    group_parents: dict[str, frozenset[str]] = field(default_factory=dict)
    blocked_by_person: Counter[str] = field(default_factory=Counter)
    blocked_destinations: Counter[str] = field(default_factory=Counter)
    by_basis: Counter[str] = field(default_factory=Counter)
    grants_used: Counter[str] = field(default_factory=Counter)
    emergencies_used: Counter[str] = field(default_factory=Counter)
    grants: dict[str, AdminEntry] = field(default_factory=dict)
    emergencies: list[AdminEntry] = field(default_factory=list)
    self_declared: dict[str, AdminEntry] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    # access requests from the block page, and what administration answered (by request id)
    access_requests: dict[str, AdminEntry] = field(default_factory=dict)
    request_answers: dict[str, str] = field(default_factory=dict)
    # Visits (proxy/visits.py: a page opened, `visit: true`) blocked, by service (its id, or the
    # host for one of no service) and by person; the blocked requests per service beside them
    blocked_visits: int = 0
    blocked_visits_by_service: Counter[str] = field(default_factory=Counter)
    blocked_requests_by_service: Counter[str] = field(default_factory=Counter)
    blocked_visits_by_person: Counter[str] = field(default_factory=Counter)
    requests: dict[str, RequestRow] = field(default_factory=dict)
    emergency_rows: dict[str, EmergencyRow] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    refused_forms: list[RefusedForm] = field(default_factory=list)

    def services_by_visits(self, n: int = TOP) -> list[tuple[str, int, int]]:
        """(service, blocked visits, blocked requests), most visits first (then requests)."""
        rows = [
            (k, self.blocked_visits_by_service[k], v)
            for k, v in self.blocked_requests_by_service.items()
        ]
        rows.sort(key=lambda row: (-row[1], -row[2], row[0]))
        return rows[:n]

    def part_of(self, label: str) -> str:
        """The groups that include the group(s) of a `blocked_by_own_group` row, for the reader:
        `all-staff` for `staff` when all-staff includes staff; "" for a top-level group."""
        own = set(label.split(" + "))
        above = {p for g in own for p in self.group_parents.get(g, ())} - own
        return ", ".join(sorted(above))

    def own_group_rows(self, n: int = TOP) -> list[tuple[str, int]]:
        """The once-counted group rows, each label saying what includes it (`staff (in
        all-staff)`), most blocked first."""
        return [
            (f"{label} (in {above})" if (above := self.part_of(label)) else label, v)
            for label, v in self.blocked_by_own_group.most_common(n)
        ]

    @property
    def awaiting_review(self) -> list[tuple[str, AdminEntry]]:
        return [(k, v) for k, v in self.self_declared.items() if k not in self.acknowledged]


def own_groups(groups: Iterable[str], parents: dict[str, frozenset[str]]) -> str:
    """The row a blocked request counts in once: the most specific of its groups (those no other
    of its groups is included in), joined with " + " when the person is in unrelated groups.

    A decision record lists a person's groups with every group that includes them (staff and
    all-staff); counting it in each would show a board the same attempts twice."""
    gs = sorted(set(groups))
    most = [g for g in gs if not any(h != g and g in parents.get(h, ()) for h in gs)]
    return " + ".join(most) or "(no group)"


def person_of(r: dict[str, Any]) -> str:
    """The most precise name the log has for whoever made a request."""
    if r.get("user"):
        return f"user:{r['user']}"
    if r.get("device"):
        return f"device:{r['device']}"
    return f"ip:{r.get('client')}"


Describe = Callable[[Sequence[str]], str]


def summarise(
    found: Iterable[Found],
    tz: ZoneInfo,
    *,
    since: str | None = None,
    until: str | None = None,
    describe: Describe | None = None,
    group_parents: dict[str, frozenset[str]] | None = None,
) -> Summary:
    """Fold records into a Summary (one pass). `describe` names the service each granted,
    declared or requested site opens (overrides.Limits.describe, from the current rules); without
    it the sites are shown as recorded. `group_parents` is the rules' group nesting
    (CompiledPolicy.group_parents), so each attempt counts once under its most specific group;
    without it every group a record lists is taken as its own."""
    s = Summary(zone=tz.key, since=since, until=until, group_parents=dict(group_parents or {}))
    for f in found:
        r = f.record
        kind = r.get("type")
        if kind == TYPE_DECISION:
            _add_decision(s, r, tz)
        elif kind == TYPE_ADMIN:
            _add_admin(s, r, tz, describe)
            _add_admin_rows(s, r, tz, describe)
        elif kind == TYPE_FORM and r.get("outcome") in _REFUSED_OUTCOMES:
            s.refused_forms.append(
                RefusedForm(
                    when=_minute(r, tz),
                    form=str(r.get("form") or ""),
                    outcome=str(r.get("outcome")),
                    why=str(r.get("why") or r.get("limit") or ""),
                    who=person_of(r),  # the person where the form's record names one
                    site=str(r.get("site") or ""),
                )
            )
    return s


def _minute(r: dict[str, Any], tz: ZoneInfo) -> str:
    return local_time(str(r.get("ts")), tz).strftime("%Y-%m-%d %H:%M")


def _add_admin_rows(
    s: Summary, r: dict[str, Any], tz: ZoneInfo, describe: Describe | None = None
) -> None:
    """Fold request and emergency events into one row each (filed → answered, start → end);
    sites say what they open, as `describe` names them (see summarise)."""
    action, target = str(r.get("action")), str(r.get("target"))
    d = dict(r.get("details") or {})
    when = local_time(str(r.get("ts")), tz)
    if action == "access_requested":
        s.requests[target] = RequestRow(
            target, when, str(d.get("who") or r.get("by")), _opens(action, d, describe),
            str(r.get("reason") or ""),
        )  # fmt: skip
    elif action in ("access_approved", "access_denied") and target in s.requests:
        row = s.requests[target]
        row.status = "approved" if action == "access_approved" else "denied"
        row.answered, row.answered_by = when, str(r.get("by"))
        row.grant_id = str(d.get("grant_id") or "")
    elif action == "grant_revoked":
        s.revoked.add(target)
    elif action in ("emergency_self_declared", "emergency_started"):
        ends = d.get("ends")
        s.emergency_rows[target] = EmergencyRow(
            id=target,
            start=when.strftime("%Y-%m-%d %H:%M"),
            who=str(r.get("by")),
            scope=str(d.get("scope") or "everyone"),
            reason=str(r.get("reason") or ""),
            self_declared=action == "emergency_self_declared",
            site=""
            if action == "emergency_started" and not d.get("sites")
            else _opens(action, d, describe),
            end=local_time(str(ends), tz).strftime("%Y-%m-%d %H:%M") if ends else "until stopped",
            review="awaiting review" if action == "emergency_self_declared" else "",
        )
    elif action == "emergency_stopped" and target in s.emergency_rows:
        stopped = s.emergency_rows[target]
        stopped.end = f"{when:%Y-%m-%d %H:%M} (stopped by {r.get('by')})"
    elif action == "emergency_acknowledged" and target in s.emergency_rows:
        note = str(r.get("reason") or "")
        reviewed = s.emergency_rows[target]
        reviewed.review = f"reviewed {when:%Y-%m-%d %H:%M} by {r.get('by')}" + (
            f": {note}" if note else ""
        )


def _add_decision(s: Summary, r: dict[str, Any], tz: ZoneInfo) -> None:
    s.decisions += 1
    basis = str(r.get("basis"))
    s.by_basis[basis] += 1
    if basis == "grant" and r.get("override_id"):
        s.grants_used[str(r["override_id"])] += 1
    elif basis == "emergency" and r.get("override_id"):
        s.emergencies_used[str(r["override_id"])] += 1
    done = outcome(r)
    if done == "inspect":
        return  # the connection was opened to decide its requests: those are counted
    if done != "block":
        s.allowed += 1
        return
    s.blocked += 1
    when = local_time(str(r.get("ts")), tz)
    s.blocked_by_day[when.strftime("%Y-%m-%d")] += 1
    s.blocked_by_hour[when.hour] += 1
    groups = [str(g) for g in r.get("groups") or ()]
    for g in groups or ("(no group)",):
        s.blocked_by_group[g] += 1
    s.blocked_by_own_group[own_groups(groups, s.group_parents)] += 1
    s.blocked_by_person[person_of(r)] += 1
    s.blocked_destinations[str(r.get("host"))] += 1
    _add_blocked_visit(s, r)


def _add_blocked_visit(s: Summary, r: dict[str, Any]) -> None:
    """Count a blocked request under its service, and as a visit if it opened a page."""
    site = str(r.get("service") or r.get("host"))
    s.blocked_requests_by_service[site] += 1
    if r.get("visit") is True:
        s.blocked_visits += 1
        s.blocked_visits_by_service[site] += 1
        s.blocked_visits_by_person[person_of(r)] += 1


def _opens(action: str, details: dict[str, Any], describe: Describe | None) -> str:
    """The sites an admin event concerns, as people read them."""
    raw = details.get("sites")
    sites = [str(x) for x in raw] if isinstance(raw, list) else []
    if not sites and details.get("site"):
        sites = [str(details["site"])]
    if not sites:
        return "every site" if action == "emergency_started" else ""
    return describe(sites) if describe is not None else ", ".join(sites)


def _add_admin(s: Summary, r: dict[str, Any], tz: ZoneInfo, describe: Describe | None) -> None:
    details = dict(r.get("details") or {})
    action = str(r.get("action"))
    entry = AdminEntry(
        when=local_time(str(r.get("ts")), tz).strftime("%Y-%m-%d %H:%M"),
        action=action,
        by=str(r.get("by")),
        target=str(r.get("target")),
        reason=str(r.get("reason") or ""),
        details=details,
        opens=_opens(action, details, describe),
    )
    if entry.action == "access_requested":
        s.access_requests[entry.target] = entry
    elif entry.action in ("access_approved", "access_denied"):
        answer = "approved" if entry.action == "access_approved" else "denied"
        s.request_answers[entry.target] = f"{answer} by {entry.by}"
    elif entry.action == "grant_added":
        s.grants[entry.target] = entry
    elif entry.action.startswith("emergency_") and entry.action != "emergency_acknowledged":
        s.emergencies.append(entry)
        if entry.action == "emergency_self_declared":
            s.self_declared[entry.target] = entry
    if entry.action == "emergency_acknowledged":
        s.acknowledged.add(entry.target)


# -- text ------------------------------------------------------------------------------------------


def render_text(s: Summary, people: Callable[[str], str] | None = None) -> str:
    """The summary as plain text for a terminal: every value `printable` (names, hosts and reasons
    may come from the network). `people` names each person as in `render_html` (default: a code
    per person for this report alone; `show_names` shows them): a terminal report is read over
    shoulders and pasted into mail as often as the board's copy."""
    show = people or pseudonymiser(None)
    out: list[str] = []
    period = f"{s.since or 'the beginning'} to {s.until or 'now'}"
    out.append(f"Decision log report ({period}; times in {s.zone})")
    out.append(f"decisions: {s.decisions}   allowed: {s.allowed}   blocked: {s.blocked}")
    out.append("by basis: " + (", ".join(f"{k} {v}" for k, v in s.by_basis.most_common()) or "-"))

    def table(title: str, rows: Iterable[tuple[Any, int]]) -> None:
        rows = [(printable(str(k)), v) for k, v in rows]
        out.append("")
        out.append(title)
        if not rows:
            out.append("  (none)")
        width = max((len(str(k)) for k, _ in rows), default=0)
        out.extend(f"  {k!s:<{width}}  {v:>8}" for k, v in rows)

    table("Blocked attempts by day", sorted(s.blocked_by_day.items()))
    table(
        "Blocked attempts by hour of day",
        [(f"{h:02d}:00", s.blocked_by_hour[h]) for h in range(24) if s.blocked_by_hour[h]],
    )
    table(
        "Blocked attempts by group (each once, under its most specific group)", s.own_group_rows()
    )
    table("Blocked attempts by person", _people_rows(s.blocked_by_person, show))
    table("Top blocked destinations", s.blocked_destinations.most_common(TOP))
    out.append("")
    out.append(f"Blocked visits (pages opened): {s.blocked_visits}")
    out.append("Blocked visits by service (requests beside them)")
    rows = s.services_by_visits()
    if not rows:
        out.append("  (none)")
    width = max((len(k) for k, _, _ in rows), default=0)
    out.extend(f"  {k:<{width}}  {v:>8} visits  {n:>8} requests" for k, v, n in rows)
    table("Blocked visits by person", _people_rows(s.blocked_visits_by_person, show))
    out.extend(_overrides_text(s, show))
    return "\n".join(map(printable, out)) + "\n"


def _people_rows(counts: Counter[str], show: Callable[[str], str]) -> list[tuple[str, int]]:
    """The top people by count, each as `show` names them."""
    return [(show(k), v) for k, v in counts.most_common(TOP)]


def _overrides_text(s: Summary, show: Callable[[str], str]) -> list[str]:
    """The exceptions part of the text report: grants, emergencies, access requests, reviews;
    each names the sites it concerns and what they open, and the people as `show` names them."""
    out: list[str] = []
    out.append("")
    out.append("Grants used")
    if not s.grants_used and not s.grants:
        out.append("  (none)")
    for gid in sorted(set(s.grants_used) | set(s.grants)):
        g = s.grants.get(gid)
        about = (
            f" for {show(str(g.details.get('who')))} on {g.opens} by {g.by}: {g.reason}"
            if g
            else ""
        )
        out.append(f"  {gid}{about}  ({s.grants_used[gid]} requests allowed)")
    out.append("")
    out.append("Emergencies")
    if not s.emergencies:
        out.append("  (none)")
    for e in s.emergencies:
        used = s.emergencies_used.get(e.target, 0)
        on = f" on {e.opens}" if e.opens else ""
        by = show(e.by) if e.action == "emergency_self_declared" else e.by  # a person, or an admin
        out.append(
            f"  {e.when}  {e.action}  {e.target}{on}  by {by}: {e.reason}  ({used} requests)"
        )
    out.append("")
    out.append("Access requests")
    if not s.access_requests:
        out.append("  (none)")
    for rid, a in s.access_requests.items():
        answer = s.request_answers.get(rid, "pending")
        who = show(str(a.details.get("who") or a.by))
        out.append(f"  {a.when}  {rid}  {who} on {a.opens}: {a.reason}  ({answer})")
    out.append("")
    out.append("Self-declared emergencies awaiting review")
    pending = s.awaiting_review
    if not pending:
        out.append("  (none)")
    for eid, e in pending:
        who = show(str(e.details.get("scope") or e.by))
        out.append(f"  {e.when}  {eid}  {who} on {e.opens}: {e.reason}")
    return out


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1b1f24;
max-width:60rem}
h1{font-size:1.5rem}
h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{padding:.2rem .6rem;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.kpi{display:flex;gap:2rem}.kpi div{font-size:1.4rem}
.kpi span{display:block;font-size:.8rem;color:#555}
svg text{font-size:11px;fill:#333}
""".strip()


def _esc(value: object) -> str:
    """A value for the HTML report: `printable` (no control or bidi character reorders or hides
    what the board reads), then HTML-escaped."""
    return html.escape(printable(str(value)))


def _short(label: str) -> str:
    """A chart's label: 40 columns at most, printable, HTML-escaped."""
    return html.escape(clip(label, 40))


def _svg_open(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{html.escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    )


def _bar_chart(title: str, items: list[tuple[str, int]], *, vertical: bool = False) -> str:
    """An inline SVG bar chart (horizontal bars, or columns when `vertical`)."""
    esc = _esc
    if not items:
        return f'<p class="empty">No blocked attempts for "{esc(title)}".</p>'
    peak = max(v for _, v in items) or 1
    if vertical:
        col, gap, height = 22, 6, 160
        width = len(items) * (col + gap) + 40
        bars = []
        for i, (label, v) in enumerate(items):
            h = round(v / peak * (height - 30))
            x = 30 + i * (col + gap)
            bars.append(
                f'<rect x="{x}" y="{height - 20 - h}" width="{col}" height="{h}" fill="#3b6ea8">'
                f"<title>{esc(label)}: {v}</title></rect>"
                f'<text x="{x + col / 2}" y="{height - 6}" text-anchor="middle">{esc(label)}</text>'
                f'<text x="{x + col / 2}" y="{height - 24 - h}" text-anchor="middle">{v}</text>'
            )
        return f"{_svg_open(title, width, height)}{''.join(bars)}</svg>"
    row, label_w, bar_w = 22, 220, 380
    height = len(items) * row + 10
    width = label_w + bar_w + 60
    bars = []
    for i, (label, v) in enumerate(items):
        w = max(1, round(v / peak * bar_w))
        y = 5 + i * row
        bars.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_short(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 6}" fill="#c2533b">'
            f"<title>{esc(label)}: {v}</title></rect>"
            f'<text x="{label_w + w + 6}" y="{y + 15}">{v}</text>'
        )
    return f"{_svg_open(title, width, height)}{''.join(bars)}</svg>"


def _rows(headers: list[str], rows: Iterable[list[Any]], *, when: tuple[int, ...] = ()) -> str:
    """A table; the columns in `when` hold times, kept on one line."""
    esc = _esc
    head = "".join(
        f'<th class="when">{esc(h)}</th>' if i in when else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="n">{v}</td>'
            if isinstance(v, int)
            else f'<td class="when">{esc(str(v))}</td>'
            if i in when
            else f"<td>{esc(str(v))}</td>"
            for i, v in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">(none)</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kpi(value: int, label: str) -> str:
    return f"<div>{value}<span>{html.escape(label)}</span></div>"


# -- people ----------------------------------------------------------------------------------------

# Who a record is about, by the prefix of its key: these are pseudonymised. Groups and
# administrators (acting in their office) are shown as they are.
_PERSON_PREFIXES = ("user:", "device:", "ip:")


def pseudonymiser(key: bytes | None) -> Callable[[str], str]:
    """A stable short code per person ("Person 7KQ2MD"): HMAC-SHA256 of the person's key under
    `key`, so the same person has the same code in every report made with that key, and nobody
    without it can turn a code back into a name (even an address, which a bare hash would not
    hide: there are only so many). None: a key for this report alone."""
    secret = key if key is not None else secrets.token_bytes(32)

    def code(person: str) -> str:
        if not person.startswith(_PERSON_PREFIXES):
            return person
        digest = hmac.new(secret, person.encode(), hashlib.sha256).digest()
        return "Person " + base64.b32encode(digest).decode()[:6]

    return code


def show_names(person: str) -> str:
    return person


def _scope(scope: str, show: Callable[[str], str]) -> str:
    """An emergency's scope in words: everyone, a group, or one person (an identity source
    named them), their device or their address."""
    if scope in ("", "all", "everyone", "None"):
        return "everyone"
    if scope.startswith("group:"):
        return "group " + scope.removeprefix("group:")
    if show is show_names:
        return scope
    # the declarer's own device or address: its code would be a second one for the same person
    if scope.startswith("user:"):
        return "the person, wherever identified"
    return "one device" if scope.startswith("device:") else "one address"


# -- HTML ------------------------------------------------------------------------------------------

_PRINT_CSS = """
@page{size:%s;margin:14mm 12mm}
@media print{body{margin:0;max-width:none;font-size:10.5pt}h2{break-after:avoid}
tr,.kpi,svg{break-inside:avoid}thead{display:table-header-group}.chart{max-width:100%%;height:auto}}
td.when,th.when{white-space:nowrap}
.integrity{border-left:4px solid #3b6ea8;padding:.4rem .8rem;background:#f3f6fb}
.integrity.bad{border-color:#a3261b;background:#fbf1f0}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.meta dt{color:#444}dl.meta dd{margin:0}
.note{color:#333;font-size:.95rem}
"""


@dataclass(frozen=True, slots=True)
class Integrity:
    """What `audit verify` found, in the words a board reads."""

    verdict: str  # anchored | self-consistent | incomplete | broken
    statement: str


def render_html(
    s: Summary,
    *,
    district: str = "",
    generated_at: str | None = None,
    integrity: Integrity | None = None,
    people: Callable[[str], str] | None = None,
    paper: str = "Letter",
) -> str:
    """One self-contained page (no scripts, no links out), laid out to print on `paper`
    (Letter or A4). `people` names each person (default: a pseudonym per person, for this report
    alone; `show_names` shows them)."""
    esc = _esc
    show = people or pseudonymiser(None)
    named = people is show_names
    period = f"{s.since or 'the beginning'} to {s.until or 'now'}"
    hours = [(f"{h:02d}", s.blocked_by_hour[h]) for h in range(24)] if s.blocked else []
    reqs = list(s.requests.values())
    counts = Counter(r.status for r in reqs)
    grant_ids = sorted(set(s.grants_used) | set(s.grants))
    unused = [g for g in s.grants if not s.grants_used.get(g)]
    emergencies = list(s.emergency_rows.values())
    title = (
        f"{district + ': ' if district else ''}Staff use of social networking: decision log report"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(title)} ({esc(period)})</title>",
        f"<style>{_CSS}{_PRINT_CSS % ('A4' if paper.upper() == 'A4' else 'Letter')}</style>",
        "</head><body><main>",
        f"<h1>{esc(title)}</h1>",
        '<dl class="meta">',
        f"<dt>District</dt><dd>{esc(district or '(not named)')}</dd>",
        f"<dt>Period</dt><dd>{esc(period)} (times in {esc(s.zone)})</dd>",
        f"<dt>Generated at</dt><dd>{esc(generated_at or 'not stated')}</dd>",
        "</dl>",
        _integrity_html(integrity),
        '<p class="note">'
        + (
            "People are named (this copy was made with <code>--names</code>)."
            if named
            else "People are shown as codes (Person 7KQ2MD): one code is one person throughout "
            "this report. The district can match a code to a name; the report does not."
        )
        + " Administrators are named where they acted.</p>",
        '<div class="kpi">',
        _kpi(s.blocked_visits, "blocked visits (pages opened)"),
        _kpi(len(reqs), "access requests"),
        _kpi(len(s.grants), "grants issued"),
        _kpi(len(emergencies), "emergencies"),
        _kpi(len(s.refused_forms), "refused form submissions"),
        "</div>",
        "<h2>Blocked visits by service</h2>",
        "<p>A visit is a page a person opened; the images, scripts and polls a page makes are "
        f"requests, counted beside it. {s.blocked_visits} blocked visits, {s.blocked} blocked "
        "requests in all.</p>",
        _rows(["service", "visits", "requests"], ([k, v, n] for k, v, n in s.services_by_visits())),
        "<h2>Blocked visits by person</h2>",
        _bar_chart(
            "Blocked visits by person",
            [(show(k), v) for k, v in s.blocked_visits_by_person.most_common(TOP)],
        ),
        "<h2>Access requests</h2>",
        f"<p>{len(reqs)} filed: {counts['approved']} approved, {counts['denied']} denied, "
        f"{counts['pending']} not answered.</p>",
        _rows(
            ["filed", "who", "site", "reason", "answer", "answered by", "time to answer"],
            (
                [
                    r.filed.strftime("%Y-%m-%d %H:%M"),
                    show(r.who),
                    r.site,
                    r.reason,
                    r.status,
                    r.answered_by,
                    r.time_to_answer,
                ]
                for r in reqs
            ),
            when=(0,),
        ),
        "<h2>Grants</h2>",
        f"<p>{len(s.grants)} issued in the period, {len(unused)} never used.</p>",
        _rows(
            ["grant", "for", "sites", "ends", "by", "reason", "requests allowed", "use"],
            (
                [
                    gid,
                    show(str(g.details.get("who", ""))) if g else "",
                    g.opens if g else "",
                    str(g.details.get("ends", ""))[:16].replace("T", " ") if g else "",
                    g.by if g else "",
                    g.reason if g else "",
                    s.grants_used[gid],
                    _grant_use(gid, s),
                ]
                for gid in grant_ids
                for g in [s.grants.get(gid)]
            ),
        ),
        "<h2>Emergencies</h2>",
        _rows(
            [
                "start",
                "end",
                "scope",
                "declared by",
                "site",
                "reason",
                "requests allowed",
                "review",
            ],
            (
                [
                    e.start,
                    e.end,
                    _scope(e.scope, show),
                    show(e.who) if e.self_declared else e.who,
                    e.site or ("all sites" if not e.self_declared else ""),
                    e.reason,
                    s.emergencies_used.get(e.id, 0),
                    e.review or ("—" if not e.self_declared else "awaiting review"),
                ]
                for e in emergencies
            ),
            when=(0, 1),
        ),
        "<h2>Refused form submissions</h2>",
        "<p>Block-page forms that gave nothing: expired, replayed or forged tokens, daily limits "
        "reached, empty reasons.</p>",
        _rows(
            ["when", "form", "outcome", "why", "from", "site"],
            ([f.when, f.form, f.outcome, f.why, show(f.who), f.site] for f in s.refused_forms),
            when=(0,),
        ),
        "<h2>Blocked requests by day</h2>",
        _bar_chart("Blocked requests by day", sorted(s.blocked_by_day.items())),
        "<h2>Blocked requests by hour of day</h2>",
        _bar_chart("Blocked requests by hour of day", hours, vertical=True),
        "<h2>Blocked requests by group</h2>",
        f"<p>Each blocked request is counted once, under the most specific group of the person "
        "who made it: a group included in another is shown with the group that includes it "
        "(for example <em>staff (in all-staff)</em>), and a person in two unrelated groups "
        "under both (<em>coaches + staff</em>). "
        f"The rows add up to the {s.blocked} blocked requests.</p>",
        _bar_chart("Blocked requests by group", s.own_group_rows()),
        "<h2>Top blocked destinations</h2>",
        _bar_chart("Top blocked destinations", s.blocked_destinations.most_common(TOP)),
        "<h2>Blocked requests by person</h2>",
        _bar_chart(
            "Blocked requests by person",
            [(show(k), v) for k, v in s.blocked_by_person.most_common(TOP)],
        ),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _grant_use(gid: str, s: Summary) -> str:
    if gid in s.revoked:
        return "revoked" + (" (used)" if s.grants_used.get(gid) else "")
    return "used" if s.grants_used.get(gid) else "never used"


def _integrity_html(i: Integrity | None) -> str:
    if i is None:
        return (
            '<p class="integrity bad"><strong>Log integrity: not checked.</strong> '
            "Run <code>socialguard audit verify</code> to say whether this log is intact.</p>"
        )
    bad = " bad" if i.verdict in ("broken", "incomplete") else ""
    return (
        f'<p class="integrity{bad}"><strong>Log integrity: {_esc(i.verdict)}.</strong> '
        f"{_esc(i.statement)}</p>"
    )
