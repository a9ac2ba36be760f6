"""The sign-in page: served by the proxy itself under the portal's name (`identity.sign_in`).

A device the policy says must sign in (engine/signin.py) is sent here at its first request a rule
concerns; here the person signs in with the district's OpenID Connect provider, and the device's
address (and MAC, where the gateway knows it) is bound to them for the session time through the
identity service, so the very next request is theirs. "Sign out" ends the binding.

What keeps it honest:
- TLS only: plain HTTP to the portal is sent to https (a GET) or refused unread (anything else),
  so nothing a person types crosses the network in clear.
- The OpenID Connect flow's `state` is single-use, bound to the client address that started it,
  and short-lived; the `nonce` and the PKCE verifier stay here (identity/oidc.py checks them).
- The sign-out form carries a token bound to the client address with an expiry (HMAC under a
  secret of this process), and a cross-site post (Origin, Sec-Fetch-Site) is refused first.
- `next` (where to go after signing in) must be an absolute http(s) address (engine/signin.py).
- Failed sign-ins are counted and logged per address (bounded memory); an address with too many
  recent failures is refused for a while. Nothing logged ever holds a code, token or password.

No mitmproxy types: the addon passes the facts in (`PortalRequest`) and turns the `PortalResponse`
into a flow response. `handle()` talks to the provider and writes the store, so the addon calls it
off the event loop (`await portal.handle_async(req)`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import structlog

from socialguard.engine.identity import SOURCE_SIGN_IN, Binding
from socialguard.engine.model import Principal
from socialguard.engine.signin import safe_next
from socialguard.identity.directory import Directory, DirectoryError
from socialguard.identity.oidc import OidcClient, OidcError, pkce_pair

from .answers import guarded
from .pagekit import Brand, follow_up_page

__all__ = [
    "CALLBACK_PATH",
    "PortalRequest",
    "PortalResponse",
    "SignInPortal",
    "portal_url",
]

log = structlog.get_logger(__name__)

START_PATH = "/oidc/start"
CALLBACK_PATH = "/oidc/callback"
SIGN_OUT_PATH = "/sign-out"
PASSWORD_PATH = "/password"
MAX_USERNAME = 256
STATE_TTL_S = 600.0  # from the sign-in button to the provider's answer
MAX_PENDING = 4096  # sign-ins under way; the oldest is dropped past this
TOKEN_TTL_S = 3600.0  # a sign-out form stays usable this long
FAILURE_WINDOW_S = 900.0
FAILURE_LIMIT = 5  # failed sign-ins an address may have in the window before it must wait
MAX_TRACKED = 4096  # addresses whose failures are remembered; the oldest is forgotten past this
MAX_BODY = 4096

HTML = "text/html; charset=utf-8"


def portal_url(portal: str, next_url: str | None = None) -> str:
    """The sign-in page's address, with where to go afterwards."""
    base = f"https://{portal}/"
    return base + "?" + urlencode({"next": next_url}) if next_url else base


@dataclass(frozen=True, slots=True)
class PortalRequest:
    """One request to the portal, as the addon saw it."""

    method: str
    scheme: str  # http | https
    path: str  # with its query
    client_ip: str
    principal: Principal
    mac: str | None = None
    body: bytes = b""
    content_type: str | None = None
    origin: str | None = None
    sec_fetch_site: str | None = None


@dataclass(frozen=True, slots=True)
class PortalResponse:
    """What to answer, and `event`: what happened, for the decision log (empty: nothing to log)."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    event: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A sign-in under way: what the provider's answer must match."""

    client_ip: str
    nonce: str
    verifier: str
    next_url: str | None
    expires: float


class SignInPortal:
    """The portal's pages and the OpenID Connect flow behind them."""

    def __init__(  # noqa: PLR0917 - the portal's collaborators, from one call site
        self,
        portal: str,
        session_s: float,
        oidc: OidcClient | None,
        bind: Callable[[Binding], None],
        unbind: Callable[[str], Binding | None],
        person: Callable[[str], Binding | None],
        brand: Callable[[], Brand],
        clock: Callable[[], float],
        directory: Callable[[], Directory | None] | None = None,
    ) -> None:
        self.portal = portal
        # password sign-in: the identity service's directory (None: the page offers no form)
        self._directory = directory
        self.session_s = session_s
        self.oidc = oidc
        self._bind = bind
        self._unbind = unbind
        self._person = person
        self._brand = brand
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {"signed_in": 0, "signed_out": 0}
        self.refused: dict[str, int] = {}

    # ----------------------------------------------------------------- entry points

    async def handle_async(self, req: PortalRequest) -> PortalResponse:
        return await asyncio.to_thread(self.handle, req)

    def handle(self, req: PortalRequest) -> PortalResponse:
        """Answer one request to the portal (blocking: the provider, the store)."""
        if req.scheme != "https":
            return self.plain_http(req)
        path, _, query = req.path.partition("?")
        params = {k: v[0] for k, v in parse_qs(query, max_num_fields=20).items() if v}
        if req.method in ("GET", "HEAD"):
            if path == "/":
                return self._front(req, params.get("next"))
            if path == START_PATH and self.oidc is not None:
                return self._start(req, params.get("next"))
            if path == CALLBACK_PATH and self.oidc is not None:
                return self._callback(req, params)
        elif req.method == "POST" and path == SIGN_OUT_PATH:
            return self._sign_out(req)
        elif req.method == "POST" and path == PASSWORD_PATH and self._directory is not None:
            return self._password(req)
        return self._page(404, "Not found", "<p>There is no such page here.</p>", tone="error")

    def plain_http(self, req: PortalRequest) -> PortalResponse:
        """Plain HTTP to the portal: a GET goes to the same page over https; anything else (a form
        that would carry credentials) is refused, its body unread."""
        if req.method in ("GET", "HEAD"):
            return PortalResponse(
                308, guarded({"Location": f"https://{self.portal}{req.path}"}), b""
            )
        self._count_refused("plain_http")
        event = self._event("refused", req, reason="plain_http")
        log.warning("sign_in_refused", reason="plain_http", client=req.client_ip)
        page = self._page(
            403,
            "Use the secure sign-in page",
            f'<p>Sign-in works only over a secure connection: open <a class="tap" '
            f'href="{html.escape(portal_url(self.portal))}">the sign-in page</a>.</p>',
            tone="error",
        )
        return PortalResponse(page.status, page.headers, page.body, event)

    def too_large(self, req: PortalRequest) -> PortalResponse:
        """A post whose body is over the forms' limit (or of no declared length): refused, its
        body unread."""
        return self._refuse(req, "too_large", status=413)

    def send_to_sign_in(self, next_url: str | None, *, page: bool) -> PortalResponse:
        """The answer to a request that must wait for a sign-in: a redirect for a page a person
        looks at, else 511 Network Authentication Required (RFC 6585) naming the page."""
        target = portal_url(self.portal, safe_next(next_url))
        if page:
            return PortalResponse(302, guarded({"Location": target, "Content-Type": HTML}), b"")
        return PortalResponse(
            511,
            guarded({"Content-Type": "text/plain; charset=utf-8"}),
            f"Sign in first: {target}\n".encode(),
        )

    # ----------------------------------------------------------------- pages

    def _front(self, req: PortalRequest, next_raw: str | None) -> PortalResponse:
        next_url = safe_next(next_raw)
        bound = self._person(req.client_ip)
        if bound is not None and bound.user is not None:
            return self._signed_in_page(req, bound, next_url)
        going = (
            f"<p>Afterwards you go on to <strong>{html.escape(_site(next_url))}</strong>.</p>"
            if next_url
            else ""
        )
        body = (
            "<p>This network asks you to sign in with your district account before you use "
            "sites the district's policy covers, so that the rules for your account apply.</p>"
            f"{going}"
        )
        if self.oidc is not None:
            start = START_PATH + ("?" + urlencode({"next": next_url}) if next_url else "")
            body += (
                f'<p><a class="tap" href="{html.escape(start)}">'
                f"{html.escape(self.oidc.spec.label)}</a></p>"
            )
        if self._directory is not None:
            body += self._password_form(req.client_ip, next_url)
        return self._page(200, "Sign in to use this network", body)

    def _password_form(self, client_ip: str, next_url: str | None) -> str:
        """The user name and password form (posted over TLS to this page, CSRF-token bound to
        the device's address)."""
        token = self._issue_token(client_ip, kind="password")
        keep = (
            f'<input type="hidden" name="next" value="{html.escape(next_url)}">' if next_url else ""
        )
        return (
            f'<form class="sg-form" method="post" action="{PASSWORD_PATH}">'
            "<h2>Sign in with your district user name</h2>"
            f'<input type="hidden" name="token" value="{html.escape(token)}">{keep}'
            '<label for="sg-user">User name<input id="sg-user" name="username" type="text" '
            'autocomplete="username" autocapitalize="none" spellcheck="false" required></label>'
            '<label for="sg-pass">Password<input id="sg-pass" name="password" type="password" '
            'autocomplete="current-password" required></label>'
            '<button type="submit">Sign in</button></form>'
        )

    def _signed_in_page(
        self, req: PortalRequest, bound: Binding, next_url: str | None
    ) -> PortalResponse:
        token = self._issue_token(req.client_ip)
        go = (
            f'<p><a class="tap" href="{html.escape(next_url)}">Continue to '
            f"{html.escape(_site(next_url))}</a></p>"
            if next_url
            else ""
        )
        body = (
            f"<p>This device is signed in as <strong>{html.escape(bound.user or '')}</strong>."
            f"</p>{go}"
            f'<form class="sg-form" method="post" action="{SIGN_OUT_PATH}">'
            f'<input type="hidden" name="token" value="{html.escape(token)}">'
            '<button type="submit">Sign out</button></form>'
            '<p class="small">Sign out before you hand this device to someone else.</p>'
        )
        return self._page(200, "Signed in", body, tone="ok")

    def _page(self, status: int, title: str, body: str, *, tone: str = "info") -> PortalResponse:
        page = follow_up_page(title, body, self._brand(), None, tone=tone)
        return PortalResponse(status, guarded({"Content-Type": HTML}), page)

    # ----------------------------------------------------------------- the OpenID Connect flow

    def _start(self, req: PortalRequest, next_raw: str | None) -> PortalResponse:
        oidc = self.oidc
        assert oidc is not None
        if self._too_many_failures(req.client_ip):
            return self._refuse(req, "rate_limited", status=429)
        state = secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        verifier, challenge = pkce_pair()
        now = self._clock()
        with self._lock:
            for key in [k for k, p in self._pending.items() if p.expires <= now]:
                del self._pending[key]
            while len(self._pending) >= MAX_PENDING:
                self._pending.popitem(last=False)
            self._pending[state] = _Pending(
                req.client_ip, nonce, verifier, safe_next(next_raw), now + STATE_TTL_S
            )
        location = oidc.authorization_url(state, nonce, challenge)
        return PortalResponse(303, guarded({"Location": location}), b"")

    def _callback(self, req: PortalRequest, params: dict[str, str]) -> PortalResponse:
        oidc = self.oidc
        assert oidc is not None
        if self._too_many_failures(req.client_ip):
            return self._refuse(req, "rate_limited", status=429)
        pending = self._take_pending(req, params.get("state", ""))
        if isinstance(pending, str):
            return self._fail(req, pending)
        if "error" in params:
            return self._fail(req, "provider_refused", detail=params["error"][:80])
        if "iss" in params and params["iss"].rstrip("/") != oidc.issuer:
            return self._fail(req, "wrong_issuer")  # RFC 9207: an answer from another provider
        code = params.get("code", "")
        if not code:
            return self._fail(req, "no_code")
        try:
            id_token = oidc.exchange(code, pending.verifier)
            # the provider stamps its tokens by the wall clock; the proxy's own clock (which
            # tests move) keeps the bindings and the sign-in's state
            person = oidc.verify(id_token, pending.nonce, time.time())
        except OidcError as e:
            return self._fail(req, e.why, detail=str(e))
        binding = self._bind_person(req, person.username, person.groups)
        return self._signed_in(req, binding, pending.next_url, "oidc")

    def _take_pending(self, req: PortalRequest, state: str) -> _Pending | str:
        """The sign-in `state` names, used up; or why it is refused."""
        now = self._clock()
        with self._lock:
            pending = self._pending.get(state) if state else None
            if pending is None:
                return "unknown_state"  # forged, replayed, or dropped
            if pending.client_ip != req.client_ip:
                return "wrong_address"  # left in place: the device that started it may finish
            del self._pending[state]
        if pending.expires <= now:
            return "expired_state"
        return pending

    # ----------------------------------------------------------------- password sign-in

    def _password(self, req: PortalRequest) -> PortalResponse:
        """A user name and password, checked by a bind to the directory (identity/directory.py).
        The password is never logged, stored or shown; only the user name tried is logged."""
        directory = self._directory() if self._directory is not None else None
        if directory is None:
            return self._refuse(req, "no_directory", status=503)
        fields = self._form_fields(req)
        if isinstance(fields, PortalResponse):
            return fields
        if not self._check_token(fields.get("token", ""), req.client_ip, kind="password"):
            return self._refuse(req, "bad_token")
        if self._too_many_failures(req.client_ip):
            return self._refuse(req, "rate_limited", status=429)
        username = fields.get("username", "").strip()[:MAX_USERNAME]
        password = fields.get("password", "")
        try:
            person = directory.authenticate(username, password)
        except DirectoryError as e:
            return self._fail(req, "unreachable", detail=str(e))
        if person is None:
            return self._fail(req, "bad_password", username=username)
        binding = self._bind_person(req, person.username, person.groups)
        return self._signed_in(req, binding, safe_next(fields.get("next")), "ldap")

    def _form_fields(self, req: PortalRequest) -> dict[str, str] | PortalResponse:
        """The posted form's fields, or the refusal of a cross-site or malformed post."""
        if not _same_origin(req, self.portal):
            return self._refuse(req, "cross_site")
        if req.content_type is None or not req.content_type.lower().startswith(
            "application/x-www-form-urlencoded"
        ):
            return self._refuse(req, "bad_form")
        parsed = parse_qs(req.body[:MAX_BODY].decode("utf-8", "replace"), max_num_fields=8)
        return {k: v[0] for k, v in parsed.items() if v}

    def _bind_person(self, req: PortalRequest, user: str, groups: frozenset[str]) -> Binding:
        now = self._clock()
        binding = Binding(
            req.client_ip,
            SOURCE_SIGN_IN,
            user=user,
            groups=groups,
            mac=req.mac,
            start=now,
            until=now + self.session_s,
        )
        self._bind(binding)
        with self._lock:
            self.counters["signed_in"] += 1
            self._failures.pop(req.client_ip, None)
        return binding

    def _signed_in(
        self, req: PortalRequest, binding: Binding, next_url: str | None, method: str
    ) -> PortalResponse:
        """After a sign-in: on to where the person was going, or the signed-in page."""
        event = self._event("signed_in", req, user=binding.user, method=method)
        event["groups"] = sorted(binding.groups)
        log.info("signed_in", user=binding.user, client=req.client_ip, method=method)
        if next_url:
            return PortalResponse(303, guarded({"Location": next_url}), b"", event)
        page = self._signed_in_page(req, binding, None)
        return PortalResponse(page.status, page.headers, page.body, event)

    # ----------------------------------------------------------------- signing out

    def _sign_out(self, req: PortalRequest) -> PortalResponse:
        fields = self._form_fields(req)
        if isinstance(fields, PortalResponse):
            return fields
        if not self._check_token(fields.get("token", ""), req.client_ip):
            return self._refuse(req, "bad_token")
        ended = self._unbind(req.client_ip)
        with self._lock:
            self.counters["signed_out"] += 1
        user = ended.user if ended is not None else None
        log.info("signed_out", user=user, client=req.client_ip)
        event = self._event("signed_out", req, user=user)
        page = self._page(
            200,
            "Signed out",
            "<p>This device is no longer signed in. Sites the district's policy covers ask "
            "you to sign in again.</p>",
            tone="ok",
        )
        return PortalResponse(page.status, page.headers, page.body, event)

    def _issue_token(self, client_ip: str, kind: str = "sign-out") -> str:
        expires = int(self._clock() + TOKEN_TTL_S)
        return f"{expires}.{self._mac(client_ip, expires, kind)}"

    def _check_token(self, token: str, client_ip: str, kind: str = "sign-out") -> bool:
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or not mac:
            return False
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(client_ip, expires, kind)):
            return False
        return self._clock() < expires

    def _mac(self, client_ip: str, expires: int, kind: str) -> str:
        msg = f"{kind}|{client_ip}|{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    # ----------------------------------------------------------------- failures

    def _too_many_failures(self, client_ip: str) -> bool:
        now = self._clock()
        with self._lock:
            recent = self._failures.get(client_ip)
            if recent is None:
                return False
            while recent and recent[0] <= now - FAILURE_WINDOW_S:
                recent.popleft()
            return len(recent) >= FAILURE_LIMIT

    def _note_failure(self, client_ip: str) -> None:
        now = self._clock()
        with self._lock:
            recent = self._failures.pop(client_ip, None)
            if recent is None:
                recent = deque(maxlen=FAILURE_LIMIT)
            recent.append(now)
            self._failures[client_ip] = recent  # most recent last
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def _fail(
        self,
        req: PortalRequest,
        why: str,
        *,
        detail: str | None = None,
        username: str | None = None,
    ) -> PortalResponse:
        """A failed sign-in: counted against the address, logged, and a page saying so."""
        self._note_failure(req.client_ip)
        return self._refuse(req, why, detail=detail, status=403, username=username)

    def _refuse(
        self,
        req: PortalRequest,
        why: str,
        *,
        detail: str | None = None,
        status: int = 403,
        username: str | None = None,
    ) -> PortalResponse:
        self._count_refused(why)
        log.warning(
            "sign_in_refused", reason=why, client=req.client_ip, detail=detail, username=username
        )
        event = self._event("refused", req, reason=why, username=username)
        again = (
            "<p>Too many failed sign-ins from this device: wait a few minutes.</p>"
            if why == "rate_limited"
            else f'<p><a class="tap" href="{html.escape(portal_url(self.portal))}">Try again</a>'
            "</p>"
        )
        page = self._page(status, "Sign-in did not work", again, tone="error")
        return PortalResponse(page.status, page.headers, page.body, event)

    def _count_refused(self, why: str) -> None:
        with self._lock:
            self.refused[why] = self.refused.get(why, 0) + 1

    @staticmethod
    def _event(outcome: str, req: PortalRequest, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": "sign_in",
            "outcome": outcome,
            "client": req.client_ip,
            "path": req.path.split("?", 1)[0][:200],
        }
        event.update({k: v for k, v in fields.items() if v is not None})
        return event


def _site(url: str) -> str:
    return urlsplit(url).hostname or url


def _same_origin(req: PortalRequest, portal: str) -> bool:
    """A post from the portal's own page (or from no page a browser names)."""
    site = (req.sec_fetch_site or "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return False
    origin = (req.origin or "").strip().lower()
    return not origin or origin == f"https://{quote(portal)}"
