"""School accounts only: the sign-in restriction headers Google and Microsoft document for proxies.

The board policy forbids "emailing students other than through and to school controlled and
monitored accounts". Gmail and Outlook on the web serve district and personal mailboxes from the
same hosts, so a domain block cannot tell them apart. Both vendors let a network say which
accounts may sign in, through headers an intercepting proxy adds to sign-in requests:

- Google: `X-GoogApps-Allowed-Domains: district.org, district.k12.mt.us` on traffic to google.com
  and its subdomains (Google Workspace admin help, "Block access to consumer accounts").
- Microsoft Entra tenant restrictions (v1): `Restrict-Access-To-Tenants: <tenants, comma
  separated>` and `Restrict-Access-Context: <directory ID>` on login.microsoftonline.com,
  login.microsoft.com and login.windows.net; and, to block personal Microsoft accounts,
  `sec-Restrict-Tenant-Access-Policy: restrict-msa` on login.live.com.

The proxy sets these (replacing any the client sent, so a client cannot widen its own
allow-list) on every request to those hosts. Pure: no I/O, no mitmproxy.
"""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialguard.engine.hosts import normalise_host

__all__ = [
    "GOOGLE_HEADER",
    "MICROSOFT_CONSUMER_HEADER",
    "MICROSOFT_CONTEXT_HEADER",
    "MICROSOFT_LOGIN_HOSTS",
    "MICROSOFT_TENANTS_HEADER",
    "AccountsSpec",
    "MicrosoftAccountsSpec",
    "account_headers",
    "is_sign_in_host",
    "sign_in_domains",
]

GOOGLE_HEADER = "X-GoogApps-Allowed-Domains"
MICROSOFT_TENANTS_HEADER = "Restrict-Access-To-Tenants"
MICROSOFT_CONTEXT_HEADER = "Restrict-Access-Context"
MICROSOFT_CONSUMER_HEADER = "sec-Restrict-Tenant-Access-Policy"
MICROSOFT_CONSUMER_VALUE = "restrict-msa"

GOOGLE_DOMAIN = "google.com"
MICROSOFT_LOGIN_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoft.com", "login.windows.net"}
)
MICROSOFT_CONSUMER_HOST = "login.live.com"

# Google's documented extra value: also allow personal (consumer) Google accounts.
_GOOGLE_CONSUMER = "consumer_accounts"
_TENANT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def _domain(value: str, field: str) -> str:
    try:
        name = normalise_host(value)
    except ValueError as e:
        raise ValueError(f"{field}: {e}") from None
    if "." not in name or ":" in name or name.replace(".", "").isdigit():
        raise ValueError(f"{field}: {value!r} is not a domain name")
    return name


class MicrosoftAccountsSpec(_Spec):
    """`accounts.microsoft`: the Entra tenants staff may sign in to on the district network."""

    tenants: list[str] = Field(min_length=1)
    """Tenant domains (district.onmicrosoft.com, district.org) or tenant IDs (GUIDs)."""
    context: str
    """The district's own directory (tenant) ID, a GUID: Microsoft logs blocked sign-ins there."""
    block_personal: bool = False
    """Also block personal Microsoft accounts (Outlook.com, Hotmail, OneDrive personal)."""

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, v: list[str]) -> list[str]:
        out = []
        for tenant in v:
            t = tenant.strip().lower()
            if not (_is_guid(t) or _TENANT_NAME.fullmatch(t)):
                raise ValueError(f"tenant {tenant!r} is neither a domain name nor a tenant ID")
            out.append(t)
        return list(dict.fromkeys(out))

    @field_validator("context")
    @classmethod
    def _context(cls, v: str) -> str:
        if not _is_guid(v.strip()):
            raise ValueError(f"context {v!r} must be the district's directory ID (a GUID)")
        return v.strip().lower()


class AccountsSpec(_Spec):
    """`accounts:` in the rules file. Each vendor is optional; an absent one gets no header."""

    google: list[str] = Field(default_factory=list)
    """Google Workspace domains allowed to sign in (`consumer_accounts` also allows Gmail)."""
    microsoft: MicrosoftAccountsSpec | None = None

    @field_validator("google")
    @classmethod
    def _google(cls, v: list[str]) -> list[str]:
        out = [
            g.strip().lower() if g.strip().lower() == _GOOGLE_CONSUMER else _domain(g, "google")
            for g in v
        ]
        return list(dict.fromkeys(out))


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def is_sign_in_host(host: str) -> bool:
    """True for a (normalised) host on which some vendor's restriction header belongs."""
    return _is_google(host) or host in MICROSOFT_LOGIN_HOSTS or host == MICROSOFT_CONSUMER_HOST


def sign_in_domains(accounts: AccountsSpec | None) -> tuple[str, ...]:
    """The domains whose requests `account_headers` restricts: what a steered deployment must send
    through the proxy for `accounts:` to hold (a domain covers its subdomains)."""
    if accounts is None:
        return ()
    out: list[str] = [GOOGLE_DOMAIN] if accounts.google else []
    if accounts.microsoft is not None:
        out.extend(sorted(MICROSOFT_LOGIN_HOSTS))
        if accounts.microsoft.block_personal:
            out.append(MICROSOFT_CONSUMER_HOST)
    return tuple(out)


def _is_google(host: str) -> bool:
    return host == GOOGLE_DOMAIN or host.endswith("." + GOOGLE_DOMAIN)


def account_headers(accounts: AccountsSpec | None, host: str) -> dict[str, str]:
    """The headers to set (replacing the client's) on a request to `host` (normalised), or {}.

    Only the vendor's documented hosts get its headers: leaking a tenant list to every site
    would tell the world which tenants the district uses.
    """
    if accounts is None:
        return {}
    if accounts.google and _is_google(host):
        return {GOOGLE_HEADER: ", ".join(accounts.google)}
    microsoft = accounts.microsoft
    if microsoft is not None:
        if host in MICROSOFT_LOGIN_HOSTS:
            return {
                MICROSOFT_TENANTS_HEADER: ",".join(microsoft.tenants),
                MICROSOFT_CONTEXT_HEADER: microsoft.context,
            }
        if host == MICROSOFT_CONSUMER_HOST and microsoft.block_personal:
            return {MICROSOFT_CONSUMER_HEADER: MICROSOFT_CONSUMER_VALUE}
    return {}
