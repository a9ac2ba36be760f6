"""The block page's two ways out: "This is an emergency" and "Ask administration for access".

The forms are served by the proxy on the blocked site's own origin, under the reserved path
`/.socialguard/`, so they must resist cross-site submission. Each form carries a token that is:
- bound to the person (client address, user, device) and to the decision (host, rule, decision id,
URL),
- signed with HMAC-SHA256 under a secret that lives only in this process,
- short-lived (10 minutes by default) and single-use (a used-token set, pruned as tokens expire).
A replayed, forged, expired or misdirected token is refused and logged; a cross-site POST (Origin or
Sec-Fetch-Site says so) is refused before the token is even looked at.

No mitmproxy types here: the addon passes the facts of the request in (`FormRequest`) and turns the
`FormResponse` into a flow response. `handle()` writes to the store, so the addon must call it off
the
event loop (`await forms.handle_async(req)`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from socialguard.audit.schema import MAX_PATH, cap_field, new_decision_id
from socialguard.engine.limits import Allowance, allowances, person_key
from socialguard.engine.model import Bypass, Decision, Principal
from socialguard.errors import SocialGuardError
from socialguard.overrides import (
    AccessRequest,
    Actor,
    Limits,
    SnapshotRefresher,
    Store,
    utc_now,
)
from socialguard.overrides.store import FormToken, LimitReachedError, TokenUsedError

from .answers import guarded
from .pagekit import Brand, follow_up_page

log = structlog.get_logger(__name__)

PREFIX = "/.socialguard/"
EMERGENCY_PATH = PREFIX + "emergency"
REQUEST_PATH = PREFIX + "request"
TOKEN_TTL = timedelta(minutes=10)
MAX_BODY = 8 * 1024  # a token and a reason of at most 500 characters: a few hundred bytes
MAX_REASON = 500

SECURITY_HEADERS = guarded({"Content-Type": "text/html; charset=utf-8"})


def is_form_path(path: str) -> bool:
    """True for requests the proxy must hand to `handle()` instead of deciding them as usual."""
    return path.split("?", 1)[0].startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class FormRequest:
    """The facts of one request to a form path, as the addon saw them."""

    method: str
    path: str
    host: str  # normalised host the request was for (the blocked site's origin)
    principal: Principal
    body: bytes = b""
    content_type: str | None = None
    origin: str | None = None  # the Origin header
    sec_fetch_site: str | None = None  # the Sec-Fetch-Site header


@dataclass(frozen=True, slots=True)
class FormResponse:
    """What to answer, plus `event`: what happened, for the decision log."""

    status: int
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a valid token vouches for: who was blocked, where, by which rule, and where they were
    going."""

    kind: str  # "emergency" | "request"
    binding: str
    host: str
    site: str
    url: str
    rule_id: str | None
    decision_id: str | None
    expires: int
    nonce: str


class TokenError(SocialGuardError):
    """A form token was refused; `why` is forged | expired | replayed | wrong_person |
    wrong_site."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"form token refused: {why}")


def principal_binding(p: Principal) -> str:
    """The person a token belongs to: address, user and device together."""
    return f"{p.client_ip}|{p.user or ''}|{p.device or ''}"


def form_person(p: Principal) -> dict[str, Any]:
    """Who used a form, for its record: the address, and the person where known (with the
    identity source that named them), so `audit search --who user:NAME` finds their forms."""
    out: dict[str, Any] = {"client": p.client_ip}
    if p.user:
        out["user"] = p.user
    if p.device:
        out["device"] = p.device
    if p.source:
        out["identified_by"] = p.source
    return out


def emergency_scope(p: Principal) -> str:
    """Whom a self-declared emergency opens the site for: a person an identity source named
    (directory sign-in, RADIUS, DHCP: `Principal.source`) wherever a source names them, since
    their phone and laptop are one person in one emergency; anyone else on this device (or this
    address) only, because a device owner's or an address's "person" is only a guess."""
    if p.source is not None and p.user:
        return f"user:{p.user}"
    return f"device:{p.device}" if p.device else f"ip:{p.client_ip}"


def where_it_applies(key: str) -> str:
    """Where an override for `key` (an emergency's scope, a request's person) lets them in, in
    the words the confirmation and the form use."""
    if key.startswith("user:"):
        return "for you wherever the network identifies you"
    return "on this device"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks single-use form tokens; the secret never leaves the process."""

    def __init__(self, secret: bytes | None = None, ttl: timedelta = TOKEN_TTL) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.ttl = ttl
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, ticket_fields: dict[str, Any], now: datetime) -> str:
        data = {
            **ticket_fields,
            "expires": int((now + self.ttl).timestamp()),
            "nonce": secrets.token_urlsafe(12),
        }
        payload = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._mac(payload)}"

    def check(self, token: str, *, kind: str, binding: str, host: str, now: datetime) -> Ticket:
        """Verify without consuming: signature, kind, person, site, expiry, not used before."""
        payload, _, mac = token.strip().partition(".")
        if not payload or not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenError("forged")
        try:
            ticket = Ticket(**json.loads(_unb64(payload)))
        except (ValueError, TypeError) as e:
            raise TokenError("forged") from e
        if ticket.kind != kind:
            raise TokenError("forged")
        if ticket.binding != binding:
            raise TokenError("wrong_person")
        if ticket.host != host:
            raise TokenError("wrong_site")
        if now.timestamp() >= ticket.expires:
            raise TokenError("expired")
        with self._lock:
            if ticket.nonce in self._used:
                raise TokenError("replayed")
        return ticket

    def consume(self, ticket: Ticket, now: datetime) -> None:
        """Mark used (raises `replayed` if another request got there first); prunes expired
        entries."""
        with self._lock:
            if ticket.nonce in self._used:
                raise TokenError("replayed")
            cutoff = int(now.timestamp())
            for nonce in [n for n, exp in self._used.items() if exp <= cutoff]:
                del self._used[nonce]
            self._used[ticket.nonce] = ticket.expires


class BlockPageForms:
    """The forms' whole life: links on the block page, then the POST that comes back.

    `limits` is called on each use so a policy reload is honoured; `refresher` (if given) is
    refreshed
    right after a self-declared emergency, so the redirect back to the site is already allowed.
    """

    def __init__(
        self,
        store: Store,
        limits: Callable[[], Limits],
        *,
        refresher: SnapshotRefresher | None = None,
        secret: bytes | None = None,
        clock: Callable[[], datetime] = utc_now,
        ttl: timedelta = TOKEN_TTL,
        brand: Callable[[], Brand] | None = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.brand = brand or (lambda: Brand("district"))
        self.refresher = refresher
        self.signer = TokenSigner(secret or _store_secret(store), ttl)
        self._clock = clock

    # -- the block page side --------------------------------------------------------------------

    def links(
        self, decision: Decision, *, url: str, decision_id: str | None, now: datetime | None = None
    ) -> str:
        """HTML for the block page: the forms the blocking rule's `bypass` allows (may be empty)."""
        now = now or self._clock()
        limits = self.limits()
        fields = {
            "binding": principal_binding(decision.principal),
            "host": decision.host,
            "site": decision.matched_domain or decision.host,
            "url": url,
            "rule_id": decision.rule_id,
            "decision_id": decision_id,
        }
        parts = []
        p = decision.principal
        resets = _resets_at(now, limits)
        if Bypass.GRANT in decision.bypass and _has_allowance(
            p, limits.requests_per_day, limits.requests_per_day_unidentified, "requests"
        ):
            spends = allowances(
                p,
                per_person=limits.requests_per_day,
                per_unidentified=limits.requests_per_day_unidentified,
                what="requests",
            )
            if self._room_today("requests", spends, _day_start(now, limits)):
                token = self.signer.issue({**fields, "kind": "request"}, now)
                parts.append(_request_form(token))
            else:
                parts.append(_used_up("requests for access", spends, resets))
        if (
            Bypass.EMERGENCY in decision.bypass
            and limits.emergency_minutes > 0
            and _has_allowance(
                p, limits.emergency_per_day, limits.emergency_per_day_unidentified, "emergency"
            )
        ):
            spends = allowances(
                p,
                per_person=limits.emergency_per_day,
                per_unidentified=limits.emergency_per_day_unidentified,
                what="emergency",
            )
            if self._room_today("emergency", spends, _day_start(now, limits)):
                token = self.signer.issue({**fields, "kind": "emergency"}, now)
                label = (
                    limits.service_label(decision.matched_domain or decision.host)
                    if limits.service_label
                    else None
                )
                where = where_it_applies(emergency_scope(p))
                parts.append(_emergency_form(token, limits, label or "this site", where))
            else:
                parts.append(_used_up("emergency accesses", spends, resets))
        return "\n".join(parts)

    def _room_today(self, kind: str, spends: tuple[Allowance, ...], day_start: datetime) -> bool:
        """Is any of today's allowance left? A form the store would refuse is not offered. With
        a refresher this is read from its snapshot (memory: the block page is built on the event
        loop); a use elsewhere is seen on its next poll. A store that cannot say (or fails to)
        gets the form: the store still has the last word."""
        if self.refresher is not None:
            return self.refresher.uses.room(kind, spends, day_start)
        room = getattr(self.store, "allowance_left", None)
        if room is None:
            return True
        try:
            return bool(room(kind, spends, day_start))
        except SocialGuardError as e:
            log.warning("allowance_check_failed", kind=kind, error=str(e))
            return True

    # -- the POST side --------------------------------------------------------------------------

    async def handle_async(self, req: FormRequest) -> FormResponse:
        """`handle` in a worker thread: it writes to the store, which must not block the event
        loop."""
        return await asyncio.to_thread(self.handle, req)

    def handle(self, req: FormRequest) -> FormResponse:
        path = req.path.split("?", 1)[0]
        kind = {EMERGENCY_PATH: "emergency", REQUEST_PATH: "request"}.get(path)
        base: dict[str, Any] = {
            "event": "block_page_form",
            "form": kind or path,
            **form_person(req.principal),
        }
        if kind is None:
            cap_field(base, "form", MAX_PATH)  # the path the client chose
            return self._page(
                404, "Not found", "There is nothing here.", {**base, "outcome": "not_found"}
            )
        if req.method.upper() != "POST":
            return self._page(
                405,
                "Use the form",
                "Open the page again and use the form on it.",
                {**base, "outcome": "bad_method"},
                {"Allow": "POST"},
            )
        if why := _cross_site(req):
            return self._refused(req, base, why)
        fields = _form_fields(req)
        now = self._clock()
        try:
            ticket = self.signer.check(
                fields.get("token", ""),
                kind=kind,
                binding=principal_binding(req.principal),
                host=req.host,
                now=now,
            )
        except TokenError as e:
            return self._refused(req, base, e.why)
        reason = " ".join(fields.get("reason", "").split())[:MAX_REASON]
        if not reason:
            return self._page(
                400,
                "Please say why",
                "A reason is required. Go back, fill it in and send the form again.",
                {**base, "outcome": "invalid", "why": "empty_reason"},
                reference=ticket.decision_id,
            )
        try:
            self.signer.consume(ticket, now)
        except TokenError as e:
            return self._refused(req, base, e.why)
        base = {
            **base,
            "decision_id": ticket.decision_id,
            "rule_id": ticket.rule_id,
            "site": ticket.site,
        }
        if kind == "emergency":
            return self._declare(req, ticket, reason, now, base)
        return self._file_request(req, ticket, reason, base)

    def _refused(self, req: FormRequest, base: dict[str, Any], why: str) -> FormResponse:
        log.warning(
            "form_token_refused",
            form=base["form"],
            why=why,
            host=req.host,
            client=req.principal.client_ip,
            user=req.principal.user,
        )
        return self._page(
            403,
            "This form has expired",
            "This form was already used, has expired, or did not come from this page. "
            "Reload the page you were trying to reach to get a fresh one.",
            {**base, "outcome": "refused", "why": why},
            reference=base.get("decision_id"),
        )

    def _declare(
        self, req: FormRequest, ticket: Ticket, reason: str, now: datetime, base: dict[str, Any]
    ) -> FormResponse:
        limits = self.limits()
        day_start = _day_start(now, limits)
        person = person_key(req.principal)
        try:
            record = self.store.declare_self_emergency(
                scope=emergency_scope(req.principal),
                person=person,
                site=ticket.site,
                url=ticket.url,
                reason=reason,
                actor=Actor(by=person, source=req.principal.client_ip),
                minutes=limits.emergency_minutes,
                per_day=limits.emergency_per_day,
                day_start=day_start,
                token=_spend(ticket),
                allowances=allowances(
                    req.principal,
                    per_person=limits.emergency_per_day,
                    per_unidentified=limits.emergency_per_day_unidentified,
                    what="emergency",
                ),
                groups=sorted(req.principal.groups),
            )
        except TokenUsedError:
            return self._refused(req, base, "replayed")
        except LimitReachedError as e:
            return self._limit_reached(base, person, e, "emergency accesses")
        if self.refresher is not None:
            self.refresher.refresh_now()
        log.info(
            "emergency_self_declared",
            emergency_id=record.emergency.id,
            person=person,
            site=ticket.site,
        )
        ends = record.emergency.ends
        until = _local_time(ends, limits) if ends else "the end of the emergency"
        label = limits.service_label(ticket.site) if limits.service_label else None
        url = html.escape(ticket.url)
        body = (
            f"<p>You declared an emergency. {html.escape(label or ticket.site)} is open "
            f"{where_it_applies(record.emergency.scope)} until "
            f"<strong>{html.escape(until)}</strong>.</p>"
            "<p>Administration will review it; your reason was recorded.</p>"
            f'<p><a class="tap" href="{url}">Continue to {html.escape(_short(ticket.url))}</a></p>'
        )
        return FormResponse(
            200,
            dict(SECURITY_HEADERS),
            follow_up_page(
                f"Emergency access until {until}",
                body,
                self.brand(),
                ticket.decision_id,
                tone="ok",
            ),
            {
                **base,
                "outcome": "emergency_declared",
                "override_id": record.emergency.id,
                "ends": record.emergency.ends.isoformat() if record.emergency.ends else None,
            },
        )

    def _limit_reached(
        self, base: dict[str, Any], person: str, e: LimitReachedError, what: str
    ) -> FormResponse:
        """A daily allowance is used up: say whose, and whom to turn to instead."""
        a = e.allowance
        log.info("form_limit_reached", form=base["form"], person=person, limit=str(e))
        if a is not None and a.shared:
            text = (
                f"This network has no way to tell who you are, and the {a.per_day} {what} it "
                "allows a day to people it cannot identify are used up. "
                "Please contact administration directly."
            )
        else:
            per_day = a.per_day if a is not None else 0
            text = (
                f"You have used all {per_day} {what} allowed today. "
                "Please contact administration directly."
            )
        resets = _resets_at(self._clock(), self.limits())
        return self._page(
            429,
            "Daily limit reached",
            f"{text} The limit starts again at {resets}.",
            {**base, "outcome": "limit_reached", "limit": a.name if a is not None else None},
            reference=base.get("decision_id"),
        )

    def _file_request(
        self, req: FormRequest, ticket: Ticket, reason: str, base: dict[str, Any]
    ) -> FormResponse:
        who = person_key(req.principal)
        try:
            r = self._file(req, ticket, reason, who)
        except TokenUsedError:
            return self._refused(req, base, "replayed")
        except LimitReachedError as e:
            return self._limit_reached(base, who, e, "requests for access")
        if self.refresher is not None:
            # the next block page counts this request, and the notice goes out now, not at a poll
            self.refresher.refresh_now()
        log.info("access_requested", request_id=r.id, who=who, site=ticket.site)
        return self._page(
            200,
            "Request sent",
            f"Your request ({r.id}) for {self.limits().describe((ticket.site,))} was sent to "
            f"administration. Once it is approved you will be able to reach the site "
            f"{where_it_applies(r.who)}.",
            {**base, "outcome": "access_requested", "request_id": r.id},
            reference=ticket.decision_id,
            tone="ok",
        )

    def _page(
        self,
        status: int,
        title: str,
        text: str,
        event: dict[str, Any],
        extra: dict[str, str] | None = None,
        *,
        reference: str | None = None,
        tone: str = "error",
    ) -> FormResponse:
        """A follow-up page, branded with the district, whom to contact and a reference: the
        blocked decision's when the form was genuine, else a new one written with the event."""
        if reference is None:
            reference = new_decision_id()
            event = {**event, "decision_id": reference}
        return FormResponse(
            status,
            {**SECURITY_HEADERS, **(extra or {})},
            follow_up_page(
                title, f"<p>{html.escape(text)}</p>", self.brand(), reference, tone=tone
            ),
            event,
        )

    def _file(self, req: FormRequest, ticket: Ticket, reason: str, who: str) -> AccessRequest:
        p = req.principal
        limits = self.limits()
        return self.store.file_request(
            who=who,
            site=ticket.site,
            url=ticket.url,
            rule_id=ticket.rule_id,
            decision_id=ticket.decision_id,
            reason=reason,
            client_ip=p.client_ip,
            actor=Actor(by=person_key(p), source=p.client_ip),
            token=_spend(ticket),
            allowances=allowances(
                p,
                per_person=limits.requests_per_day,
                per_unidentified=limits.requests_per_day_unidentified,
                what="requests",
            ),
            day_start=_day_start(self._clock(), limits),
            groups=sorted(p.groups),
        )


def _has_allowance(p: Principal, per_person: int, per_unidentified: int, what: str) -> bool:
    """Does the policy give this principal any use of the form at all (a limit of 0 turns it
    off)? Whether today's is used up is the store's to say when the form comes back."""
    spends = allowances(p, per_person=per_person, per_unidentified=per_unidentified, what=what)
    return all(a.per_day > 0 for a in spends)


def _day_start(now: datetime, limits: Limits) -> datetime:
    """Midnight today in the district's zone: daily allowances start again then."""
    local = now.astimezone(limits.timezone)
    return datetime.combine(local.date(), time(0), tzinfo=limits.timezone)


def _spend(ticket: Ticket) -> FormToken:
    return ticket.nonce, datetime.fromtimestamp(ticket.expires, UTC)


def _store_secret(store: Store) -> bytes | None:
    """The store's shared signing key, so any node can check a form another node served; None
    (a per-process key) if this store cannot provide one."""
    try:
        return store.form_secret()
    except (AttributeError, SocialGuardError) as e:
        log.warning("form_secret_unavailable", error=str(e))
        return None


def _cross_site(req: FormRequest) -> str | None:
    """Refuse what the browser itself says came from elsewhere (defence in depth beside the
    token)."""
    site = (req.sec_fetch_site or "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return "cross_site"
    if req.origin:
        origin_host = (urlsplit(req.origin.strip()).hostname or "").lower()
        if origin_host != req.host.lower():
            return "cross_site"
    return None


def _form_fields(req: FormRequest) -> dict[str, str]:
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded" or len(req.body) > MAX_BODY:
        return {}
    try:
        parsed = parse_qs(req.body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


def _resets_at(now: datetime, limits: Limits) -> str:
    """When today's allowances start again, as the person reads a clock: midnight, local."""
    nxt = _day_start(now, limits) + timedelta(days=1)
    return "midnight (" + nxt.strftime("%-d %b, 00:00 %Z") + ")"


def _local_time(when: datetime, limits: Limits) -> str:
    return when.astimezone(limits.timezone).strftime("%H:%M %Z")


def _short(url: str) -> str:
    return url if len(url) <= 60 else url[:57] + "..."


def _used_up(what: str, spends: tuple[Allowance, ...], resets: str) -> str:
    """Said instead of a form the store would refuse: whose allowance is used and when it is
    back."""
    shared = next((a for a in spends if a.shared), None)
    whose = (
        "the allowance shared by everyone this network cannot identify"
        if shared is not None
        else "your allowance"
    )
    return (
        f'<p class="note">Today\'s {html.escape(what)} are used up ({whose}). '
        f"They start again at {html.escape(resets)}. Please contact administration directly.</p>"
    )


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _emergency_form(token: str, limits: Limits, site: str, where: str) -> str:
    return (
        '<form class="sg-form" method="post" action="/.socialguard/emergency">'
        "<h3>If you have an emergency</h3>"
        f"<p>The board policy lets you open {html.escape(site)} {where} for "
        f"{limits.emergency_minutes} minutes in an emergency (at most "
        f"{_times(limits.emergency_per_day)} a day). Administration reviews every emergency.</p>"
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<label for="sg-emergency-reason">I declare an emergency. What is happening?'
        '<textarea id="sg-emergency-reason" name="reason" required maxlength="500">'
        "</textarea></label>"
        '<button type="submit">I declare an emergency</button></form>'
    )


def _request_form(token: str) -> str:
    return (
        '<form class="sg-form" method="post" action="/.socialguard/request">'
        "<h3>Ask administration for access</h3>"
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<label for="sg-request-reason">Why do you need this site?'
        '<textarea id="sg-request-reason" name="reason" required maxlength="500">'
        "</textarea></label>"
        '<button type="submit">Send the request</button></form>'
    )
