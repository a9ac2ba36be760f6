"""The sign-in page through the real proxy, against a real OpenID Connect provider: a device that
must sign in reaches nothing a rule concerns until it has, and then its requests are the person's.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import httpx

from conftest import PORTAL, Provider, log_in_at_provider, sign_in_rules  # type: ignore[import-not-found]
from socialguard.identity.store import BindingStore

StartProxy = Callable[..., Any]


class _From(httpcore.SyncBackend):
    """Every connection from one local address."""

    def __init__(self, source: str) -> None:
        self.source = source

    def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:  # fmt: skip
        return super().connect_tcp(host, port, timeout, self.source, socket_options)


def browser(proxy: Any, source: str = "127.0.0.1") -> httpx.Client:
    """A browser on the district network, through the proxy (trusting its CA)."""
    ctx = ssl.create_default_context(cafile=str(proxy.ca))
    transport = httpx.HTTPTransport(proxy=proxy.url, verify=ctx)
    # httpx (and httpcore) drop `local_address` on the way through a proxy: connect from this
    # client address (another device on the network) by a backend that binds it
    transport._pool = httpcore.HTTPProxy(
        proxy_url=httpcore.URL(proxy.url), ssl_context=ctx, network_backend=_From(source)
    )
    return httpx.Client(
        transport=transport,
        follow_redirects=False,
        timeout=20,
        headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"},
    )


def start_link(page: str) -> str:
    m = re.search(r'href="(/oidc/start[^"]*)"', page)
    assert m, page
    return m.group(1).replace("&amp;", "&")


def sign_in(proxy: Any, provider: Provider, user: str, source: str = "127.0.0.1",
            next_url: str = "https://www.facebook.com/") -> httpx.Response:  # fmt: skip
    """The whole flow as a person's browser walks it; the portal's answer to the callback."""
    with browser(proxy, source) as b:
        sent = b.get(next_url)
        assert sent.status_code == 302
        front = b.get(sent.headers["location"])
        assert front.status_code == 200
        to_provider = b.get(f"https://{PORTAL}{start_link(front.text)}")
        assert to_provider.status_code == 303
        callback = log_in_at_provider(provider, to_provider.headers["location"], user)
        return b.get(callback)


def events(proxy: Any, outcome: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in proxy.records()
        if r.get("type") == "sign_in" and (outcome is None or r.get("outcome") == outcome)
    ]


def request_records(proxy: Any, host: str) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("host") == host and r.get("stage") == "request"]


def test_before_sign_in_nothing_a_rule_concerns_reaches_the_origin(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    with browser(proxy) as b:
        page = b.get("https://www.facebook.com/groups/x?y=1")
        assert page.status_code == 302
        target = urlsplit(page.headers["location"])
        assert (target.scheme, target.hostname, target.path) == ("https", PORTAL, "/")
        assert parse_qs(target.query)["next"] == ["https://www.facebook.com/groups/x?y=1"]
        # a form post (not a page): 511, its body never read, let alone forwarded
        post = b.post("http://www.facebook.com/login", content=b"password=hunter2")
        assert post.status_code == 511
        assert PORTAL in post.text
        # a site no rule mentions is decided as before: no sign-in needed
        other = b.get("http://www.example.org/")
        assert other.status_code == 200
    assert not origin.saw(b"facebook")
    assert not origin.saw(b"hunter2")
    assert origin.saw(b"www.example.org")
    sent = request_records(proxy, "www.facebook.com")
    assert [(r["action"], r["basis"]) for r in sent] == [("block", "sign_in")] * 2
    assert all(r["user"] is None and "identified_by" not in r for r in sent)


def test_a_signed_in_person_is_the_principal_and_their_group_decides(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    done = sign_in(proxy, provider, "jdoe")
    assert done.status_code == 303
    assert done.headers["location"] == "https://www.facebook.com/"
    with browser(proxy) as b:
        blocked = b.get("https://www.facebook.com/")
    assert blocked.status_code == 403  # staff, in school hours: the rule, not the sign-in page
    assert "jdoe@district.example" in blocked.text
    record = request_records(proxy, "www.facebook.com")[-1]
    assert (record["user"], record["identified_by"], record["groups"]) == (
        "jdoe@district.example", "sign-in", ["staff"],
    )  # fmt: skip
    assert record["rule"] == "staff-social-school-hours"
    assert not origin.saw(b"facebook")
    signed = events(proxy, "signed_in")
    assert [(e["user"], e["groups"], e["client"]) for e in signed] == [
        ("jdoe@district.example", ["District-Staff"], "127.0.0.1")
    ]
    # what the proxy wrote to <state>/identity.db (what `socialguard who` reads), at the proxy's
    # clock: the harness's ManualClock stands at a school day in the past, `who` at the wall clock
    store = BindingStore.open_read_only(proxy.rules.parent / "state" / "identity.db")
    assert store is not None
    kept = store.find("127.0.0.1", proxy.clock.now().timestamp())
    store.close()
    assert kept is not None and (kept.user, kept.source) == ("jdoe@district.example", "sign-in")


def test_a_person_whose_group_may_use_the_site_reaches_it_after_signing_in(
    start_proxy: StartProxy, provider: Provider, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(sign_in_rules(provider, tmp_path))
    assert sign_in(proxy, provider, "pr").status_code == 303
    with browser(proxy) as b:
        # over https the connection is passed through (the origin's own certificate): plain
        # HTTP shows the request's own record
        assert b.get("http://www.facebook.com/").status_code == 200
    assert origin.saw(b"Host: www.facebook.com")
    record = request_records(proxy, "www.facebook.com")[-1]
    assert (record["action"], record["identified_by"]) == ("allow", "sign-in")
    assert record["groups"] == ["comms"]
