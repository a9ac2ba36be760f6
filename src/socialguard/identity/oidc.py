"""OpenID Connect sign-in against the district's provider (Google Workspace, Entra ID, ...).

The proxy is a confidential client using the authorization code flow with PKCE (S256): the
sign-in page sends the person to the provider's authorization endpoint with a `state` and a
`nonce` of its own, the provider sends them back with a code, and the proxy exchanges the code
(with its client secret and the PKCE verifier) for an ID token whose signature it checks against
the provider's published keys (JWKS), and whose issuer, audience, expiry and nonce it checks
before it believes a word of it (OpenID Connect Core 1.0, 3.1.3.7).

Every call here is blocking network I/O: the proxy calls them on a worker thread, never on
mitmproxy's event loop. Errors are `OidcError` with a short `why` for counters and logs and a
message that names the issuer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from socialguard.engine.identity import OidcSpec
from socialguard.errors import SocialGuardError

__all__ = ["OidcClient", "OidcError", "OidcPerson", "pkce_pair"]

MAX_RESPONSE = 1 << 20  # a discovery document, a JWKS or a token answer: a few kB
TIMEOUT_S = 10.0
LEEWAY_S = 60  # clock skew between the proxy and the provider
# asymmetric algorithms only: `none` and HMAC (keyed with the client secret) are never accepted
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")


class OidcError(SocialGuardError):
    """The provider could not be reached or its answer was refused; `why` is a short reason
    (unreachable, bad_discovery, token_refused, bad_signature, bad_claims, ...)."""

    def __init__(self, why: str, message: str) -> None:
        self.why = why
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class OidcPerson:
    """Who the ID token says signed in."""

    username: str
    groups: frozenset[str]
    display_name: str | None = None
    email: str | None = None


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE code verifier and its S256 challenge (RFC 7636, 4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def read_client_secret(path: Path) -> str:
    """The client secret: the first line of its file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"OpenID Connect client secret file {path} is empty")
    return lines[0].strip()


class OidcClient:
    """One provider, discovered at start (`discover`), then used for each sign-in."""

    def __init__(self, spec: OidcSpec, rules_dir: Path, redirect_uri: str) -> None:
        self.spec = spec
        self.issuer = spec.issuer.rstrip("/")
        self.redirect_uri = redirect_uri
        self._secret = read_client_secret(rules_dir / spec.client_secret_file)
        self._tls = ssl.create_default_context(
            cafile=str(rules_dir / spec.ca_file) if spec.ca_file else None
        )
        # no proxy from the environment: the gateway itself reaches the provider directly
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._tls)
        )
        self._meta: dict[str, Any] = {}
        self._keys: KeySet | None = None
        self._keys_lock = threading.Lock()

    # ----------------------------------------------------------------- HTTP

    def _fetch(self, url: str, *, data: dict[str, str] | None = None) -> Any:
        """GET (or POST a form to) `url` on the provider; the JSON answer."""
        if not url.startswith("https://"):
            raise OidcError("bad_discovery", f"{self.issuer}: refusing a non-https URL {url!r}")
        headers = {"Accept": "application/json"}
        body = None
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            basic = f"{_q(self.spec.client_id)}:{_q(self._secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode("ascii")
        req = urllib.request.Request(url, data=body, headers=headers)
        try:
            with self._opener.open(req, timeout=TIMEOUT_S) as resp:
                raw = resp.read(MAX_RESPONSE + 1)
        except urllib.error.HTTPError as e:
            detail = _error_text(e)
            raise OidcError(
                "token_refused" if data is not None else "bad_discovery",
                f"the OpenID Connect provider {self.issuer} answered {e.code}{detail}",
            ) from e
        except (OSError, ValueError) as e:
            raise OidcError(
                "unreachable", f"the OpenID Connect provider {self.issuer} is unreachable: {e}"
            ) from e
        if len(raw) > MAX_RESPONSE:
            raise OidcError("bad_discovery", f"{self.issuer}: an answer over {MAX_RESPONSE} bytes")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise OidcError("bad_discovery", f"{self.issuer}: an answer that is not JSON") from e

    # ----------------------------------------------------------------- discovery

    def discover(self) -> None:
        """Read the provider's metadata and keys. Raises OidcError naming the issuer."""
        meta = self._fetch(self.issuer + "/.well-known/openid-configuration")
        if not isinstance(meta, dict) or meta.get("issuer", "").rstrip("/") != self.issuer:
            raise OidcError(
                "bad_discovery",
                f"the OpenID Connect provider at {self.issuer} names another issuer "
                f"({meta.get('issuer') if isinstance(meta, dict) else None!r})",
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(key), str) or not meta[key].startswith("https://"):
                raise OidcError("bad_discovery", f"{self.issuer}: discovery lacks an https {key}")
        methods = meta.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise OidcError("bad_discovery", f"{self.issuer} does not support PKCE with S256")
        self._meta = meta
        self._load_keys()

    def _load_keys(self) -> KeySet:
        doc = self._fetch(self._meta["jwks_uri"])
        try:
            keys = KeySet.import_key_set(doc)
        except (JoseError, ValueError, TypeError, KeyError) as e:
            raise OidcError("bad_discovery", f"{self.issuer}: its JWKS cannot be read: {e}") from e
        with self._keys_lock:
            self._keys = keys
        return keys

    @property
    def discovered(self) -> bool:
        return bool(self._meta)

    # ----------------------------------------------------------------- the flow

    def authorization_url(self, state: str, nonce: str, challenge: str) -> str:
        """Where the person's browser goes to sign in at the provider."""
        query = {
            "response_type": "code",
            "client_id": self.spec.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.spec.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        endpoint = self._meta["authorization_endpoint"]
        sep = "&" if "?" in endpoint else "?"
        return endpoint + sep + urllib.parse.urlencode(query)

    def exchange(self, code: str, verifier: str) -> str:
        """Exchange the code (with the PKCE verifier) for the ID token. Blocking."""
        answer = self._fetch(
            self._meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
        )
        token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise OidcError("token_refused", f"{self.issuer}: the token answer has no ID token")
        return token

    def verify(self, id_token: str, nonce: str, now: float) -> OidcPerson:
        """Check the ID token's signature (against the JWKS, fetched again once for a key it
        does not know: providers rotate keys) and its claims; who it names. Blocking."""
        keys = self._keys
        if keys is None:
            raise OidcError("unreachable", f"{self.issuer}: the provider was never discovered")
        kid = _kid(id_token)
        if kid is not None and all(k.kid != kid for k in keys.keys):
            keys = self._load_keys()  # a key it does not know: providers rotate their keys
        try:
            token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError, TypeError) as e:
            raise OidcError("bad_signature", f"{self.issuer}: ID token refused: {e}") from e
        claims = token.claims
        registry = jwt.JWTClaimsRegistry(
            now=int(now),
            leeway=LEEWAY_S,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.spec.client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as e:
            raise OidcError("bad_claims", f"{self.issuer}: ID token refused: {e}") from e
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.spec.client_id:
            raise OidcError("bad_claims", f"{self.issuer}: ID token for another party (azp)")
        return _person(claims, self.spec)


def _person(claims: dict[str, Any], spec: OidcSpec) -> OidcPerson:
    username = claims.get(spec.username_claim)
    if not isinstance(username, str) or not username.strip():
        raise OidcError("bad_claims", f"the ID token has no {spec.username_claim!r} claim")
    raw = claims.get(spec.groups_claim, [])
    if isinstance(raw, str):
        raw = [raw]
    groups = (
        frozenset(g for g in raw if isinstance(g, str)) if isinstance(raw, list) else frozenset()
    )
    name = claims.get("name")
    email = claims.get("email")
    return OidcPerson(
        username.strip(),
        groups,
        name if isinstance(name, str) else None,
        email if isinstance(email, str) else None,
    )


def _kid(id_token: str) -> str | None:
    """The `kid` of a compact JWS's header, read without trusting it (only to pick a key)."""
    head = id_token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _q(text: str) -> str:
    """RFC 6749 2.3.1: client id and secret are form-encoded before Basic authentication."""
    return urllib.parse.quote(text, safe="")


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(e.read(4096))
    except (OSError, ValueError):
        return ""
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return f" ({doc['error'][:80]})"
    return ""
