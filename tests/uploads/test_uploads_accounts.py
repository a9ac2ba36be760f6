"""Sign-in restriction headers: the vendor's documented names, on the vendor's hosts only."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from socialguard.engine.accounts import AccountsSpec, account_headers, is_sign_in_host

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ACCOUNTS = AccountsSpec.model_validate(
    {
        "google": ["District.org", "students.district.org"],
        "microsoft": {
            "tenants": ["district.onmicrosoft.com", "district.org", TENANT_ID],
            "context": TENANT_ID.upper(),
        },
    }
)
GOOGLE = {"X-GoogApps-Allowed-Domains": "district.org, students.district.org"}
MICROSOFT = {
    "Restrict-Access-To-Tenants": f"district.onmicrosoft.com,district.org,{TENANT_ID}",
    "Restrict-Access-Context": TENANT_ID,
}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("accounts.google.com", GOOGLE),
        ("mail.google.com", GOOGLE),
        ("www.google.com", GOOGLE),
        ("google.com", GOOGLE),
        ("login.microsoftonline.com", MICROSOFT),
        ("login.microsoft.com", MICROSOFT),
        ("login.windows.net", MICROSOFT),
        ("login.live.com", {}),  # personal accounts stay allowed unless block_personal
        ("notgoogle.com", {}),
        ("google.com.evil.example", {}),
        ("www.facebook.com", {}),
        ("outlook.office.com", {}),
        ("microsoftonline.com", {}),
    ],
)
def test_headers_go_to_the_documented_sign_in_hosts_only(
    host: str, expected: dict[str, str]
) -> None:
    assert account_headers(ACCOUNTS, host) == expected


def test_block_personal_adds_microsofts_consumer_header_on_login_live_com() -> None:
    spec = AccountsSpec.model_validate(
        {"microsoft": {"tenants": ["district.org"], "context": TENANT_ID, "block_personal": True}}
    )
    assert account_headers(spec, "login.live.com") == {
        "sec-Restrict-Tenant-Access-Policy": "restrict-msa"
    }
    assert account_headers(spec, "accounts.google.com") == {}


def test_no_accounts_section_means_no_headers() -> None:
    assert account_headers(None, "accounts.google.com") == {}
    assert account_headers(AccountsSpec(), "login.microsoftonline.com") == {}


def test_google_consumer_accounts_keyword_is_kept_as_google_spells_it() -> None:
    spec = AccountsSpec.model_validate({"google": ["district.org", "consumer_accounts"]})
    assert account_headers(spec, "accounts.google.com") == {
        "X-GoogApps-Allowed-Domains": "district.org, consumer_accounts"
    }


def test_returned_headers_are_the_callers_to_change() -> None:
    first = account_headers(ACCOUNTS, "accounts.google.com")
    first["X-Other"] = "1"
    assert account_headers(ACCOUNTS, "accounts.google.com") == GOOGLE


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"google": ["not a domain"]}, "google"),
        ({"google": ["10.0.0.1"]}, "not a domain name"),
        ({"microsoft": {"tenants": [], "context": TENANT_ID}}, "at least 1 item"),
        ({"microsoft": {"tenants": ["district.org"]}}, "context"),
        ({"microsoft": {"tenants": ["district.org"], "context": "district.org"}}, "GUID"),
        ({"microsoft": {"tenants": ["bad tenant"], "context": TENANT_ID}}, "neither a domain"),
        ({"yahoo": ["district.org"]}, "Extra inputs are not permitted"),
        ({"google": "district.org"}, "valid list"),
    ],
)
def test_bad_accounts_sections_are_refused_naming_the_field(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        AccountsSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("accounts.google.com", True),
        ("login.live.com", True),
        ("login.windows.net", True),
        ("www.example.com", False),
    ],
)
def test_is_sign_in_host(host: str, expected: bool) -> None:
    assert is_sign_in_host(host) is expected
