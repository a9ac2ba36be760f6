"""Trying to get around the sign-in page: forged and replayed answers, someone else's tokens, plain
HTTP, open redirects, and a binding outliving its person. Every refusal is logged."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from test_signin_flow import (  # type: ignore[import-not-found]
    browser,
    events,
    request_records,
    sign_in,
    start_link,
)

from conftest import PORTAL, Provider, log_in_at_provider, sign_in_rules  # type: ignore[import-not-found]

StartProxy = Callable[..., Any]


def provider_answer(proxy: Any, provider: Provider, user: str, source: str = "127.0.0.1") -> str:
    """Start a sign-in from `source` and log in at the provider; the callback address, unused."""
    with browser(proxy, source) as b:
        front = b.get(f"https://{PORTAL}/?next=https://www.facebook.com/")
        to_provider = b.get(f"https://{PORTAL}{start_link(front.text)}")
        assert to_provider.status_code == 303
    return log_in_at_provider(provider, to_provider.headers["location"], user)


def signed_in_user(proxy: Any, source: str = "127.0.0.1") -> str | None:
    """Who the proxy takes `source` to be now (a request for a site a rule concerns)."""
    with browser(proxy, source) as b:
        b.get("http://www.instagram.com/")
    return request_records(proxy, "www.instagram.com")[-1]["user"]


def test_a_forged_state_is_refused_and_logged(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    with browser(proxy) as b:
        answer = b.get(f"https://{PORTAL}/oidc/callback?code=abc&state=made-up")
    assert answer.status_code == 403
    assert [e["reason"] for e in events(proxy, "refused")] == ["unknown_state"]
    assert signed_in_user(proxy) is None


def test_a_replayed_callback_is_refused(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    callback = provider_answer(proxy, provider, "jdoe")
    with browser(proxy) as b:
        assert b.get(callback).status_code == 303
        assert b.post(f"https://{PORTAL}/sign-out").status_code == 403  # no token: refused
        again = b.get(callback)
    assert again.status_code == 403
    assert [e["reason"] for e in events(proxy, "refused")] == ["bad_form", "unknown_state"]


def test_a_callback_from_another_address_binds_no_one(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    """The person's provider answer, taken to another device, does not sign that device in."""
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    callback = provider_answer(proxy, provider, "jdoe", source="127.0.0.1")
    with browser(proxy, "127.0.0.2") as thief:
        assert thief.get(callback).status_code == 403
    assert [e["reason"] for e in events(proxy, "refused")] == ["wrong_address"]
    assert signed_in_user(proxy, "127.0.0.2") is None
    # the device that started it may still finish it
    with browser(proxy, "127.0.0.1") as b:
        assert b.get(callback).status_code == 303
    assert signed_in_user(proxy, "127.0.0.1") == "jdoe@district.example"


def test_sign_out_refuses_a_token_from_another_address_and_a_cross_site_post(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    assert sign_in(proxy, provider, "jdoe", source="127.0.0.2").status_code == 303
    with browser(proxy, "127.0.0.2") as b:
        page = b.get(f"https://{PORTAL}/").text
    token = re.search(r'name="token" value="([^"]+)"', page)
    assert token, page
    form = {"token": token.group(1)}
    with browser(proxy, "127.0.0.3") as other:  # someone else's device, with the token
        assert other.post(f"https://{PORTAL}/sign-out", data=form).status_code == 403
    with browser(proxy, "127.0.0.2") as b:
        cross = b.post(
            f"https://{PORTAL}/sign-out", data=form, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        assert signed_in_user(proxy, "127.0.0.2") == "jdoe@district.example"
        assert b.post(f"https://{PORTAL}/sign-out", data=form).status_code == 200
    assert [e["reason"] for e in events(proxy, "refused")] == ["bad_token", "cross_site"]
    assert [e["user"] for e in events(proxy, "signed_out")] == ["jdoe@district.example"]
    # the next holder of the address is not that person, and must sign in
    assert signed_in_user(proxy, "127.0.0.2") is None
    with browser(proxy, "127.0.0.2") as b:
        assert b.get("https://www.facebook.com/").status_code == 302
    assert not origin.saw(b"facebook")


def test_the_session_ends_at_its_time(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path, session="1h"))
    identity = proxy.addon.identity
    real = identity.clock
    assert sign_in(proxy, provider, "jdoe").status_code == 303
    assert signed_in_user(proxy) == "jdoe@district.example"
    identity.clock = lambda: real() + 3600 + 1  # past the session's hour
    assert signed_in_user(proxy) is None
    with browser(proxy) as b:
        assert b.get("https://www.facebook.com/").status_code == 302


def test_plain_http_to_the_portal_never_carries_credentials(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    with browser(proxy) as b:
        get = b.get(f"http://{PORTAL}/?next=https://www.facebook.com/")
        assert get.status_code == 308
        assert get.headers["location"] == f"https://{PORTAL}/?next=https://www.facebook.com/"
        post = b.post(f"http://{PORTAL}/sign-out", content=b"username=jdoe&password=hunter2")
        assert post.status_code == 403
    assert [e["reason"] for e in events(proxy, "refused")] == ["plain_http"]
    log = "\n".join(f.read_text() for f in proxy.log_dir.glob("*.jsonl"))
    assert "hunter2" not in log
    assert origin.count() == 0  # the portal is never forwarded


@pytest.mark.parametrize(
    "next_url",
    ["javascript:alert(document.cookie)", "//evil.example/", "https://u:p@evil.example/"],
)
def test_next_is_never_an_open_redirect(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path, next_url: str
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    with browser(proxy) as b:
        front = b.get(f"https://{PORTAL}/", params={"next": next_url})
        assert "evil" not in front.text and "javascript" not in front.text
        start = b.get(f"https://{PORTAL}/oidc/start", params={"next": next_url})
        callback = log_in_at_provider(provider, start.headers["location"], "jdoe")
        done = b.get(callback)
    assert done.status_code == 200  # the signed-in page, not a redirect anywhere
    assert "location" not in done.headers
    assert "Signed in" in done.text


def test_repeated_failures_are_rate_limited_per_address(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path), socialguard_admin="127.0.0.1:0")
    with browser(proxy) as b:
        for i in range(5):
            assert b.get(f"https://{PORTAL}/oidc/callback?code=x&state=s{i}").status_code == 403
        assert b.get(f"https://{PORTAL}/oidc/start").status_code == 429
    with browser(proxy, "127.0.0.4") as other:  # another address is not held back
        assert other.get(f"https://{PORTAL}/oidc/start").status_code == 303
    reasons = [e["reason"] for e in events(proxy, "refused")]
    assert reasons == ["unknown_state"] * 5 + ["rate_limited"]
    assert proxy.addon.sign_in.refused == {"unknown_state": 5, "rate_limited": 1}
    host, port = proxy.addon._admin.address[:2]
    metrics = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    assert 'socialguard_sign_in_total{outcome="unknown_state"} 5.0' in metrics
    assert 'socialguard_sign_in_total{outcome="rate_limited"} 1.0' in metrics
    assert 'socialguard_sign_in_total{outcome="signed_in"} 0.0' in metrics


BLOCK_EVERYTHING = """\
  - id: block-everything
    description: Blocks every name, the sign-in page's included
    who: [staff, comms]
    what:
      domains: [example, district.example, facebook.com]
    action: block
"""


def test_the_portal_is_never_blocked_even_by_a_rule_blocking_everything(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    rules = sign_in_rules(provider, tmp_path, extra_rules=BLOCK_EVERYTHING, default="block")
    proxy = start_proxy(rules)
    assert sign_in(proxy, provider, "jdoe").status_code == 303
    with browser(proxy) as b:
        page = b.get(f"https://{PORTAL}/")  # signed in: blocked everywhere, yet the page works
        assert page.status_code == 200
        assert "jdoe@district.example" in page.text
        assert b.get("https://www.facebook.com/").status_code == 403
    portal = [r for r in proxy.records() if r.get("host") == PORTAL and r.get("stage")]
    assert portal and all(r["basis"] == "sign_in" and r["action"] != "block" for r in portal)
    assert not origin.saw(PORTAL.encode())


def test_the_portal_page_is_branded_self_contained_and_guarded(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    with browser(proxy) as b:
        page = b.get(f"https://{PORTAL}/?next=https://www.facebook.com/")
    assert "Test District" in page.text
    assert 'href="tel:4065550100"' in page.text
    assert "<script" not in page.text and "src=" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY"
    link = urlsplit(start_link(page.text))
    assert parse_qs(link.query)["next"] == ["https://www.facebook.com/"]


def test_an_answer_naming_another_issuer_is_refused(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    """RFC 9207: the provider names itself in its answer; an answer from another provider (a
    mix-up) is refused before its code goes anywhere."""
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    callback = provider_answer(proxy, provider, "jdoe")
    forged = callback.replace("iss=https%3A%2F%2F127.0.0.1", "iss=https%3A%2F%2Fevil.example")
    assert forged != callback
    with browser(proxy) as b:
        assert b.get(forged).status_code == 403
    assert [e["reason"] for e in events(proxy, "refused")] == ["wrong_issuer"]
    assert signed_in_user(proxy) is None


def test_a_post_to_the_portal_over_the_forms_limit_is_refused_unread(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    with browser(proxy) as b:
        try:
            status = b.post(f"https://{PORTAL}/sign-out", content=b"x" * 200_000).status_code
        except httpx.TransportError:
            status = 0  # closed while the client was still sending: the body was never read
    assert status in (0, 413)
    assert [e["reason"] for e in events(proxy, "refused")] == ["too_large"]
    assert origin.count() == 0
