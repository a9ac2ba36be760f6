"""The OpenID Connect client against the real provider: an ID token is believed only when its
signature, issuer, audience, expiry and nonce all check out; an unreachable provider is a clear
error naming the issuer, at start (the proxy refuses to start) and at run time (counted, logged)."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from test_signin_flow import browser, events  # type: ignore[import-not-found]

from conftest import (  # type: ignore[import-not-found]
    CLIENT_ID,
    CLIENT_SECRET,
    PORTAL,
    Provider,
    log_in_at_provider,
    sign_in_rules,
)
from socialguard.engine.identity import OidcSpec
from socialguard.identity.oidc import OidcClient, OidcError, pkce_pair
from socialguard.proxy.run import StartupError

StartProxy = Callable[..., Any]


def client(provider: Provider, tmp_path: Path, **spec: Any) -> OidcClient:
    secret = tmp_path / "secret"
    secret.write_text(CLIENT_SECRET + "\n")
    fields: dict[str, Any] = {
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret_file": str(secret),
        "ca_file": str(provider.cert),
        "scopes": ["openid", "email", "groups"],
    }
    fields.update(spec)
    oidc = OidcClient(OidcSpec(**fields), tmp_path, f"https://{PORTAL}/oidc/callback")
    oidc.discover()
    return oidc


def id_token(provider: Provider, oidc: OidcClient, nonce: str = "the-nonce") -> str:
    """A real ID token for jdoe, from the provider's own token endpoint."""
    verifier, challenge = pkce_pair()
    callback = log_in_at_provider(provider, oidc.authorization_url("st", nonce, challenge), "jdoe")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    return oidc.exchange(code, verifier)


def test_a_real_id_token_names_the_person_and_their_groups(
    provider: Provider, tmp_path: Path
) -> None:
    oidc = client(provider, tmp_path)
    person = oidc.verify(id_token(provider, oidc), "the-nonce", time.time())
    assert (person.username, person.groups) == ("jdoe@district.example", {"District-Staff"})


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["District-Admins"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{forged}.{sig}"


def _unsigned(token: str) -> str:
    _, payload, _ = token.split(".")
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    return f"{head}.{payload}."


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (_tamper, "bad_signature"),
        (_unsigned, "bad_signature"),
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "bad_signature"),
    ],
)
def test_a_tampered_id_token_is_refused(
    provider: Provider, tmp_path: Path, change: Callable[[str], str], why: str
) -> None:
    oidc = client(provider, tmp_path)
    token = id_token(provider, oidc)
    with pytest.raises(OidcError) as e:
        oidc.verify(change(token), "the-nonce", time.time())
    assert e.value.why == why


def test_the_wrong_nonce_is_refused(provider: Provider, tmp_path: Path) -> None:
    oidc = client(provider, tmp_path)
    with pytest.raises(OidcError, match="nonce") as e:
        oidc.verify(id_token(provider, oidc), "another-nonce", time.time())
    assert e.value.why == "bad_claims"


def test_an_expired_id_token_is_refused(provider: Provider, tmp_path: Path) -> None:
    oidc = client(provider, tmp_path)
    token = id_token(provider, oidc)
    with pytest.raises(OidcError, match="exp") as e:
        oidc.verify(token, "the-nonce", time.time() + 2 * 86400)
    assert e.value.why == "bad_claims"


def test_an_id_token_for_another_client_is_refused(provider: Provider, tmp_path: Path) -> None:
    oidc = client(provider, tmp_path)
    token = id_token(provider, oidc)
    other = client(provider, tmp_path, client_id="another-client")
    with pytest.raises(OidcError, match="aud") as e:
        other.verify(token, "the-nonce", time.time())
    assert e.value.why == "bad_claims"


def test_a_code_without_its_pkce_verifier_is_refused(provider: Provider, tmp_path: Path) -> None:
    oidc = client(provider, tmp_path)
    _, challenge = pkce_pair()
    callback = log_in_at_provider(provider, oidc.authorization_url("s", "n", challenge), "jdoe")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    other_verifier, _ = pkce_pair()
    with pytest.raises(OidcError, match="invalid_grant") as e:
        oidc.exchange(code, other_verifier)
    assert e.value.why == "token_refused"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def test_an_unreachable_provider_at_start_is_an_error_naming_the_issuer(
    start_proxy: StartProxy, provider: Provider, tmp_path: Path
) -> None:
    dead = f"https://127.0.0.1:{_dead_port()}"
    rules = sign_in_rules(provider, tmp_path).replace(provider.issuer, dead)
    with pytest.raises(StartupError, match=f"sign_in.oidc: .*{dead} is unreachable"):
        start_proxy(rules)


def test_an_unreachable_provider_at_run_time_is_counted_and_logged(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    portal = proxy.addon.sign_in
    oidc = portal.oidc
    with browser(proxy) as b:
        start = b.get(f"https://{PORTAL}/oidc/start")
        callback = log_in_at_provider(provider, start.headers["location"], "jdoe")
        oidc._meta = {**oidc._meta, "token_endpoint": f"https://127.0.0.1:{_dead_port()}/token"}
        answer = b.get(callback)
    assert answer.status_code == 403
    assert portal.refused == {"unreachable": 1}
    assert [e["reason"] for e in events(proxy, "refused")] == ["unreachable"]
    assert not origin.saw(b"code=")
