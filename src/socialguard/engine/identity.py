"""Who a person is, from identity sources: bindings of an address (and MAC) to a person.

An address is not a person: DHCP gives it to someone else tomorrow. Identity sources (RADIUS
accounting from the staff Wi-Fi, DHCP leases, later directory sign-in) say who holds an address
*now* and until when; a binding ends when its source says so (Accounting-Stop, lease expiry,
session end), so a reassigned address never carries a person's grant to the next holder.

The proxy holds a `Bindings` snapshot, immutable like the overrides snapshot, and swaps it
atomically when a source reports a change; the engine only reads it. Pure: no I/O, no clock
(`now` is an argument, seconds since the epoch).

The rules file's `identity:` section (`IdentitySpec`) configures the sources and says what an
unidentified device on a network the sources cover is: `staff` (its network's groups, as before)
or `unknown` (no network group), or must `sign-in` on the proxy's sign-in page (`sign_in:`) before
a request any rule concerns goes anywhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Binding",
    "Bindings",
    "DhcpSpec",
    "DirectorySpec",
    "IdentitySettings",
    "IdentitySpec",
    "OidcSpec",
    "RadiusSpec",
    "SignInSpec",
    "describe_source",
    "lifetime_seconds",
    "policy_groups",
]

# Sources, by the name a decision record gives them
SOURCE_RADIUS = "radius"
SOURCE_DHCP = "dhcp"
SOURCE_SIGN_IN = "sign-in"
SOURCE_DIRECTORY = "directory"

# How a person meets each source's name (the block page); a source not listed shows its name
_SOURCE_WORDS = {
    SOURCE_RADIUS: "identified by RADIUS accounting (the Wi-Fi sign-in)",
    SOURCE_DHCP: "identified by the DHCP lease of their device",
    SOURCE_SIGN_IN: "signed in on the sign-in page",
    SOURCE_DIRECTORY: "signed in with the district directory",
}


def describe_source(source: str) -> str:
    """`radius` → "identified by RADIUS accounting (the Wi-Fi sign-in)": what the block page
    tells a person about how the proxy knows who they are."""
    return _SOURCE_WORDS.get(source, f"identified by {source}")


@dataclass(frozen=True, slots=True)
class Binding:
    """An address held by a person (or, for a DHCP lease, by a device) from `start` until `until`.

    `user` is None for a lease (MAC ↔ address only). `groups` are the groups as the source named
    them (RADIUS Class / Filter-Id), mapped onto policy groups by `policy_groups`. `until` None:
    until the source ends it.
    """

    address: str
    source: str
    user: str | None = None
    groups: frozenset[str] = frozenset()
    mac: str | None = None
    start: float = 0.0
    until: float | None = None

    def live(self, now: float) -> bool:
        """Still in force at `now`?"""
        return self.until is None or now < self.until


_GONE = Binding(address="", source="")  # a delta entry saying "the base's binding ended"
_DELTA_MAX = 512


class Bindings:
    """An immutable snapshot of who holds which address: people (users) and leases (MACs).

    Lookups are one or two dict reads. A change makes a new snapshot that shares the large base
    with the old one and carries the recent changes in a small delta; when the delta grows past
    `_DELTA_MAX` it is folded into a new base. So a source may publish after every packet (a
    RADIUS burst of thousands a second) without copying 20,000 bindings each time, and a
    reader holding the old snapshot keeps a consistent view.
    """

    __slots__ = ("_base", "_delta", "_leases", "_prefix_lengths")

    EMPTY: Bindings

    def __init__(
        self,
        base: Mapping[str, Binding] | None = None,
        delta: Mapping[str, Binding] | None = None,
        leases: Mapping[str, Binding] | None = None,
        prefix_lengths: tuple[int, ...] | None = None,
    ) -> None:
        self._base: Mapping[str, Binding] = base if base is not None else {}
        self._delta: Mapping[str, Binding] = delta if delta is not None else {}
        self._leases: Mapping[str, Binding] = leases if leases is not None else {}
        # the lengths of the IPv6 prefixes bound (RADIUS Framed-IPv6-Prefix), longest first: an
        # IPv6 address no binding names exactly is looked up in each; empty, no extra work
        self._prefix_lengths: tuple[int, ...] = (
            prefix_lengths
            if prefix_lengths is not None
            else _prefix_lengths(self._base, self._delta)
        )

    def person(self, address: str, now: float) -> Binding | None:
        """The person holding `address` at `now` (or the IPv6 prefix it is in), if a source says
        so."""
        b = self._delta.get(address)
        if b is None:
            b = self._base.get(address)
            if b is None and self._prefix_lengths and ":" in address:
                b = self._in_prefix(address)
        elif b is _GONE:
            return None
        if b is None or b is _GONE or (b.until is not None and now >= b.until):
            return None
        return b

    def _in_prefix(self, address: str) -> Binding | None:
        """The binding of the longest bound prefix holding `address` (an IPv6 address)."""
        try:
            addr = int(ipaddress.IPv6Address(address))
        except ValueError:
            return None
        for length in self._prefix_lengths:
            mask = ((1 << length) - 1) << (128 - length) if length else 0
            key = f"{ipaddress.IPv6Address(addr & mask)}/{length}"
            b = self._delta.get(key)
            if b is None:
                b = self._base.get(key)
            if b is not None:
                return b  # _GONE: that prefix's binding ended (the caller says no one)
        return None

    def lease(self, address: str, now: float) -> Binding | None:
        """The DHCP lease (device MAC) on `address` at `now`."""
        b = self._leases.get(address)
        if b is None or (b.until is not None and now >= b.until):
            return None
        return b

    def with_people(self, changes: Mapping[str, Binding | None]) -> Bindings:
        """A new snapshot with `changes` applied: address → new binding, or None (ended)."""
        delta = dict(self._delta)
        lengths = set(self._prefix_lengths)
        for address, b in changes.items():
            delta[address] = _GONE if b is None else b
            if b is not None and "/" in address:
                lengths.add(int(address.rpartition("/")[2]))
        prefix_lengths = tuple(sorted(lengths, reverse=True))
        if len(delta) <= _DELTA_MAX:
            return Bindings(self._base, delta, self._leases, prefix_lengths)
        base = dict(self._base)
        for address, b in delta.items():
            if b is _GONE:
                base.pop(address, None)
            else:
                base[address] = b
        return Bindings(base, None, self._leases)  # prefix lengths worked out afresh

    def with_leases(self, leases: Iterable[Binding]) -> Bindings:
        """A new snapshot whose leases are exactly `leases` (a lease file read whole)."""
        return Bindings(
            self._base, self._delta, {b.address: b for b in leases}, self._prefix_lengths
        )

    def people(self, now: float) -> list[Binding]:
        """Every person binding in force at `now` (for `socialguard who` and the store)."""
        return [b for b in self._merged() if b.live(now)]

    def _merged(self) -> list[Binding]:
        merged = dict(self._base)
        merged.update(self._delta)
        return [b for b in merged.values() if b is not _GONE]

    def leases(self) -> list[Binding]:
        """Every lease the snapshot holds, expired or not (a source re-publishing keeps them)."""
        return list(self._leases.values())

    def __len__(self) -> int:
        return len(self._merged())


def _prefix_lengths(*maps: Mapping[str, Binding]) -> tuple[int, ...]:
    lengths = {
        int(address.rpartition("/")[2])
        for m in maps
        for address, b in m.items()
        if "/" in address and b is not _GONE
    }
    return tuple(sorted(lengths, reverse=True))


Bindings.EMPTY = Bindings()


def policy_groups(
    source_groups: frozenset[str], group_map: Mapping[str, tuple[str, ...]]
) -> set[str]:
    """Source groups (as RADIUS or a directory names them) → the policy groups they map onto.

    A source group counts only through `identity.groups` in the rules file: an operator decides
    which directory group makes someone staff, never the spelling of a name on the wire.
    """
    out: set[str] = set()
    for g in source_groups:
        out.update(group_map.get(g, ()))
    return out


# ---------------------------------------------------------------------------- the rules' section


_LIFETIME = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def lifetime_seconds(text: str) -> float:
    """`12h`, `1d`, `90m`, `1h30m` → seconds; ValueError otherwise."""
    m = _LIFETIME.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a lifetime like 12h, 90m or 1d")
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:1813)")
    ipaddress.ip_address(host.strip("[]"))
    return text


class RadiusSpec(_Spec):
    """RADIUS accounting (RFC 2866) from the Wi-Fi controllers or the RADIUS server."""

    listen: str = "127.0.0.1:1813"
    # the shared secret, in a file of its own (relative to the rules file): a rules file is
    # readable by more people than a secret should be
    secret_file: str
    # the attribute carrying the person's groups: Class (25) or Filter-Id (11)
    groups_from: Literal["class", "filter-id"] = "class"
    # how long a binding lasts without an Interim-Update or Stop (a controller that died)
    lifetime: str = "12h"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return _check_address(v)

    @field_validator("lifetime")
    @classmethod
    def _lifetime(cls, v: str) -> str:
        lifetime_seconds(v)
        return v


class DhcpSpec(_Spec):
    """A DHCP server's lease file: MAC ↔ address for the device inventory."""

    leases: str  # path, relative to the rules file
    format: Literal["dnsmasq", "kea"] = "dnsmasq"


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+$")


class OidcSpec(_Spec):
    """Sign-in with the district's OpenID Connect provider (Google Workspace, Entra ID, ...):
    authorization code with PKCE, the proxy being a confidential client."""

    issuer: str  # https://accounts.google.com, https://login.microsoftonline.com/TENANT/v2.0
    client_id: str
    # the client secret, in a file of its own (relative to the rules file), like RADIUS's
    client_secret_file: str
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # the ID token claim listing the person's groups (Entra ID: groups; Google: none by default)
    groups_claim: str = "groups"
    # the claim naming the person as the rules' `user:` does
    username_claim: str = "email"
    # a CA bundle (relative to the rules file) for a provider behind the district's own CA;
    # empty: the system's trusted CAs
    ca_file: str | None = None
    # what the sign-in page's button says
    label: str = "Sign in with your district account"

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if not v.startswith("https://") or len(v) <= len("https://"):
            raise ValueError(f"{v!r}: the issuer must be an https:// URL")
        return v

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("the scopes must include openid")
        return v


class SignInSpec(_Spec):
    """The sign-in page: served by the proxy itself under `portal`, for devices on
    `identity.networks` that no source identifies when `identity.unidentified` is sign-in."""

    # the page's host name, e.g. sign-in.district.example: never forwarded, never blocked
    portal: str
    # how long a sign-in binds the device's address to the person
    session: str = "8h"
    oidc: OidcSpec | None = None
    # password sign-in against `identity.directory` (LDAP / Active Directory)
    ldap: bool = False

    @field_validator("portal")
    @classmethod
    def _portal(cls, v: str) -> str:
        name = v.lower().rstrip(".")
        if _HOST_NAME.match(name) is None:
            raise ValueError(f"{v!r} is not a host name like sign-in.district.example")
        return name

    @field_validator("session")
    @classmethod
    def _session(cls, v: str) -> str:
        lifetime_seconds(v)
        return v


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _url_host(url: str) -> tuple[str, str, int | None]:
    """`ldaps://dc1.district.example:636` → ("ldaps", "dc1.district.example", 636)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("ldap", "ldaps"):
        raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL")
    hostport = rest.split("/", 1)[0]
    if not hostport or "@" in hostport:
        raise ValueError(f"{url!r} names no host (ldaps://HOST[:PORT])")
    port: int | None = None
    host = hostport
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                raise ValueError(f"{url!r}: bad port")
            port = int(tail[1:])
    elif ":" in hostport:
        host, _, p = hostport.rpartition(":")
        if not p.isdigit():
            raise ValueError(f"{url!r}: bad port {p!r}")
        port = int(p)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{url!r}: port {port} out of range")
    if not host:
        raise ValueError(f"{url!r} names no host")
    return scheme.lower(), host, port


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DirectorySpec(_Spec):
    """An LDAP directory (OpenLDAP, Active Directory): password sign-in by bind, and the groups
    (nested groups resolved) a person is in, mapped onto policy groups by `identity.groups`.

    Passwords travel only over TLS: `ldaps://`, or `ldap://` with `starttls: true`. Plain
    `ldap://` is refused unless `insecure_plaintext_on_loopback: true` *and* the host is a
    loopback address (a directory on the proxy's own host, or a test): the flag's name says what
    it costs, and it cannot reach a password across a network.
    """

    url: str
    starttls: bool = False
    insecure_plaintext_on_loopback: bool = False
    # PEM file of the CA(s) that sign the directory's certificate (relative to the rules file);
    # none: the system's trust store
    ca_file: str | None = None
    # the service account that searches for people and groups, and its password in a file of its
    # own (relative to the rules file), like the RADIUS secret
    bind_dn: str
    bind_password_file: str
    # where people are, and the attribute a user name is (uid for OpenLDAP, sAMAccountName for AD)
    user_base: str
    user_attribute: str = "uid"
    # extra filter a person's entry must match, e.g. (objectClass=inetOrgPerson)
    user_filter: str | None = None
    # where groups are; a group's members in `group_member_attribute` (member, uniqueMember), its
    # name (what `identity.groups` maps) in `group_name_attribute`
    group_base: str
    group_member_attribute: Literal["member", "uniqueMember"] = "member"
    group_name_attribute: str = "cn"
    # the user entry's attribute listing its groups, where the server keeps one (AD, OpenLDAP's
    # memberof overlay): read as well as the groups' member lists
    member_of_attribute: str | None = None
    display_name_attribute: str = "displayName"
    mail_attribute: str = "mail"
    # seconds for each connect and each operation
    timeout: float = 5.0
    # how long a person's groups are believed before they are looked up again
    group_cache: str = "15m"
    # how deep nested groups are followed (a cycle is cut wherever it closes)
    nesting_depth: int = Field(default=8, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        _url_host(v)
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if not 0 < v <= 60:
            raise ValueError(f"timeout {v} must be more than 0 and at most 60 seconds")
        return v

    @field_validator("group_cache")
    @classmethod
    def _group_cache(cls, v: str) -> str:
        lifetime_seconds(v)
        return v

    @field_validator("bind_dn", "bind_password_file", "user_base", "group_base")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("user_attribute", "group_name_attribute", "member_of_attribute")
    @classmethod
    def _attribute(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", v):
            raise ValueError(f"{v!r} is not an LDAP attribute name")
        return v

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("(") and v.endswith(")")):
            raise ValueError(f"{v!r} is not an LDAP filter in parentheses")
        return v

    def model_post_init(self, _context: object) -> None:
        scheme, host, _ = _url_host(self.url)
        if scheme == "ldaps" and self.starttls:
            raise ValueError("starttls: ldaps:// is TLS already; use ldap:// with starttls")
        if scheme == "ldap" and not self.starttls:
            if not self.insecure_plaintext_on_loopback:
                raise ValueError(
                    f"url: {self.url} would send passwords in the clear; use ldaps://, or "
                    "starttls: true (insecure_plaintext_on_loopback: true allows a loopback "
                    "directory only)"
                )
            if not _is_loopback(host):
                raise ValueError(
                    f"insecure_plaintext_on_loopback: {host} is not a loopback address; "
                    "use ldaps:// or starttls: true"
                )

    @property
    def tls(self) -> bool:
        """Does the connection carry TLS (so a password may go over it)?"""
        return self.starttls or self.url.lower().startswith("ldaps://")


class IdentitySpec(_Spec):
    """The rules file's `identity:` section."""

    radius: RadiusSpec | None = None
    sign_in: SignInSpec | None = None
    directory: DirectorySpec | None = None
    dhcp: list[DhcpSpec] = Field(default_factory=list)
    # source group → policy group(s)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    # the networks the sources cover (where `unidentified` applies); empty: every address
    networks: list[str] = Field(default_factory=list)
    # an address the sources cover with no person bound: its network's groups (staff), none
    # (unknown), or none until the person signs in on the sign-in page (sign-in)
    unidentified: Literal["staff", "unknown", "sign-in"] = "staff"

    @model_validator(mode="after")
    def _sign_in_page(self) -> IdentitySpec:
        if self.unidentified == "sign-in" and self.sign_in is None:
            raise ValueError("unidentified: sign-in needs a sign_in: section (the portal)")
        if self.sign_in is not None and self.sign_in.oidc is None and not self.sign_in.ldap:
            raise ValueError("sign_in: needs a sign-in method (oidc:, or ldap: true)")
        if self.sign_in is not None and self.sign_in.ldap and self.directory is None:
            raise ValueError("sign_in.ldap: true needs a directory: section to check passwords")
        return self

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for text in v:
            ipaddress.ip_network(text, strict=False)
        return v


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """`IdentitySpec` compiled for the hot path."""

    spec: IdentitySpec = field(default_factory=IdentitySpec)
    group_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # the sign-in page's host name (normalised: lower case), None without a sign-in page
    portal: str | None = None

    @classmethod
    def compile(cls, spec: IdentitySpec) -> IdentitySettings:
        return cls(
            spec,
            {k: tuple(v) for k, v in spec.groups.items()},
            tuple(ipaddress.ip_network(n, strict=False) for n in spec.networks),
            spec.sign_in.portal if spec.sign_in is not None else None,
        )

    def covers(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Is `address` on a network the identity sources cover?"""
        if not self.networks:
            return True
        return any(address.version == n.version and address in n for n in self.networks)
