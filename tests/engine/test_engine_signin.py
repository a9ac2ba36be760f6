"""The sign-in page in the engine: who must sign in, for which names, and where they may be sent
back to. The page itself is inspected (answered by the proxy) whatever the rules say."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import SCHOOL_TIME  # type: ignore[import-not-found]
from socialguard.engine import (
    CompiledPolicy,
    ConnectionVerdict,
    decide_connection,
    resolve_principal,
)
from socialguard.engine.identity import Binding
from socialguard.engine.signin import is_portal, must_sign_in, safe_next, sign_in_concerns
from socialguard.errors import PolicyError

MakePolicy = Callable[..., CompiledPolicy]

SIGN_IN = """
rules:
  - id: block-everything
    description: a rule that blocks every name, the portal's too
    who: [all-staff]
    what:
      domains: [example, facebook.com, district.example]
    action: block
  - id: staff-social
    description: No social networking in school hours
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
default: allow
identity:
  groups:
    District-Staff: [staff]
  networks: [10.30.0.0/16]
  unidentified: sign-in
  sign_in:
    portal: Sign-In.District.Example
    session: 8h
    oidc:
      issuer: https://idp.district.example
      client_id: socialguard
      client_secret_file: oidc.secret
"""


@pytest.fixture
def policy(make_policy: MakePolicy) -> CompiledPolicy:
    return make_policy(
        SIGN_IN.replace(
            "      domains: [example, facebook.com, district.example]\n",
            "      domains: [district.example]\n",
        )
    )


def test_an_unidentified_device_on_a_sign_in_network_must_sign_in(policy: CompiledPolicy) -> None:
    assert must_sign_in(policy, resolve_principal(policy, "10.30.1.2"))


def test_a_device_off_the_sign_in_networks_need_not(policy: CompiledPolicy) -> None:
    assert not must_sign_in(policy, resolve_principal(policy, "10.20.1.2"))


def test_a_signed_in_person_need_not_sign_in_again(policy: CompiledPolicy) -> None:
    b = Binding("10.30.1.2", "sign-in", user="jdoe", groups=frozenset({"District-Staff"}))
    principal = resolve_principal(policy, "10.30.1.2", binding=b)
    assert not must_sign_in(policy, principal)
    assert principal.source == "sign-in"
    assert "staff" in principal.groups


def test_only_names_a_rule_concerns_send_a_device_to_sign_in(policy: CompiledPolicy) -> None:
    assert sign_in_concerns(policy, ("www.facebook.com",))
    assert not sign_in_concerns(policy, ("updates.vendor.example",))


def test_the_portal_is_inspected_even_when_a_rule_blocks_its_name(
    make_policy: MakePolicy,
) -> None:
    policy = make_policy(SIGN_IN)
    principal = resolve_principal(policy, "10.30.1.2")
    assert is_portal(policy, "sign-in.district.example")
    cd = decide_connection(policy, "sign-in.district.example", principal, SCHOOL_TIME)
    assert cd.verdict is ConnectionVerdict.INSPECT
    assert cd.decision.basis == "sign_in"


def test_a_name_a_rule_concerns_is_inspected_for_a_device_that_must_sign_in(
    policy: CompiledPolicy,
) -> None:
    principal = resolve_principal(policy, "10.30.1.2")
    # for an unknown device no rule applies to facebook, so it would be passed through
    cd = decide_connection(policy, "www.facebook.com", principal, SCHOOL_TIME)
    assert cd.verdict is ConnectionVerdict.INSPECT
    other = decide_connection(policy, "updates.vendor.example", principal, SCHOOL_TIME)
    assert other.verdict is ConnectionVerdict.PASS


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "/relative",
        "https://user:pass@evil.example/",
        "https://evil.example\\@good.example/",
        "https://good.example/\r\nSet-Cookie: x=1",
        "https:///nohost",
        "https://good.example:99999/",
        "https://" + "a" * 3000 + ".example/",
        "",
    ],
)
def test_next_refuses_anything_but_an_absolute_http_address(url: str) -> None:
    assert safe_next(url) is None


@pytest.mark.parametrize(
    "url", ["https://www.facebook.com/groups/x?a=1", "http://example.org/", "https://[::1]:8443/"]
)
def test_next_keeps_an_absolute_http_address(url: str) -> None:
    assert safe_next(url) == url


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("portal: Sign-In.District.Example", "portal: not_a_host"),
        ("issuer: https://idp.district.example", "issuer: http://idp.district.example"),
        ("session: 8h", "session: forever"),
    ],
)
def test_a_bad_sign_in_section_is_a_located_error(
    make_policy: MakePolicy, change: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=r"policy.yaml:\d+"):
        make_policy(SIGN_IN.replace(change, message))


def test_a_sign_in_page_needs_a_method(make_policy: MakePolicy) -> None:
    text = SIGN_IN.split("    oidc:", maxsplit=1)[0]
    with pytest.raises(PolicyError, match="needs a sign-in method"):
        make_policy(text)
