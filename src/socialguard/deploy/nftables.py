"""The router's nftables ruleset for a transparent deployment, printed with comments for IT to read.

Two ways to send traffic to the proxy, from the same rules file:

- `full`: every TCP 80/443 connection from the district's LAN goes through the proxy. Strictest: the
  proxy sees (the SNI of) everything, and passes through what the policy does not concern.
- `steered`: only connections to addresses the district resolver has handed out for the domains
  the policy concerns (nftables sets filled by dnsmasq `nftset=`, see `deploy/dnsmasq.py`) go
  through the proxy; all other traffic never touches it. DNS is forced to the district resolver so
  the sets see every lookup.

Both modes drop QUIC (UDP 80/443: the proxy cannot see it, browsers fall back to TCP) and
DNS-over-TLS (853), for IPv4 and IPv6 alike — a family left out is a full bypass. A family with no
`--subnet` given is matched by interface alone, so IPv6 is never left open by omission.

The ruleset lives in its own table (`inet socialguard`), so the district's own firewall tables
are left alone and rolling back is `nft delete table inet socialguard`. Re-applying it updates the
table in one transaction: chains and district subnets are replaced, but the addresses already in
the steered sets are kept — emptying them would let clients with cached lookups bypass the proxy
until they looked the names up again. REDIRECT keeps the proxy fail-closed: if it is down,
redirected connections are refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from socialguard.errors import ConfigError

__all__ = [
    "DOH_SET",
    "SOCIAL_SET",
    "TABLE",
    "Mode",
    "RulesetOptions",
    "parse_resolver",
    "parse_subnet",
    "render_ruleset",
]

TABLE = "socialguard"  # `table inet socialguard`
SOCIAL_SET = "social"  # social_v4 / social_v6: addresses of the domains the policy concerns
DOH_SET = "doh"  # doh_v4 / doh_v6: addresses of known DNS-over-HTTPS endpoints

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_IFACE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}\*?$")


class Mode(StrEnum):
    FULL = "full"
    STEERED = "steered"


@dataclass(frozen=True, slots=True)
class RulesetOptions:
    """Everything the ruleset depends on; validated by `check()`."""

    lan: tuple[str, ...]
    subnets: tuple[Network, ...] = ()
    proxy_port: int = 8080
    mode: Mode = Mode.FULL
    workers: int = 1
    resolvers: tuple[Address, ...] = ()  # steered mode: DNS goes here; none = this router
    portals: tuple[Address, ...] = ()  # this router's addresses the sign-in portal's name gives
    command: str = "socialguard deploy nftables"

    def check(self) -> None:
        """Raise ConfigError naming the option for anything nftables would reject or misapply."""
        if not self.lan:
            raise ConfigError("--lan: give the interface the district's clients are on")
        for iface in self.lan:
            if not _IFACE.match(iface):
                raise ConfigError(
                    f"--lan {iface!r}: not an interface name (up to 15 letters, digits, "
                    "'_.@:-', optionally ending in '*')"
                )
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be at least 1")
        last = self.proxy_port + self.workers - 1
        if not self.proxy_port >= 1 or last > 65535:
            raise ConfigError(
                f"--proxy-port {self.proxy_port}: ports {self.proxy_port}..{last} must lie "
                "within 1..65535"
            )
        if self.resolvers and self.mode is not Mode.STEERED:
            raise ConfigError("--resolver: only used with --mode steered")
        families = [r.version for r in self.resolvers]
        if len(families) != len(set(families)):
            raise ConfigError("--resolver: give at most one IPv4 and one IPv6 resolver")

    @property
    def ports(self) -> range:
        return range(self.proxy_port, self.proxy_port + self.workers)


def parse_subnet(text: str) -> Network:
    """A district subnet from the command line; host bits set is a typo worth refusing."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        hint = ""
        with contextlib.suppress(ValueError):
            hint = f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
        raise ConfigError(f"--subnet {text!r}: {e}{hint}") from e


def parse_resolver(text: str) -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        raise ConfigError(f"--resolver {text!r}: not an IP address") from e


def parse_portal(text: str) -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        raise ConfigError(f"--portal {text!r}: not an IP address") from e


@dataclass(frozen=True, slots=True)
class _Family:
    """What differs between IPv4 and IPv6 in the rules."""

    name: str  # "ip" / "ip6"
    suffix: str  # "v4" / "v6"
    nfproto: str  # "ipv4" / "ipv6"
    addr_type: str  # "ipv4_addr" / "ipv6_addr"
    version: int


V4 = _Family("ip", "v4", "ipv4", "ipv4_addr", 4)
V6 = _Family("ip6", "v6", "ipv6", "ipv6_addr", 6)


def render_ruleset(opts: RulesetOptions) -> str:
    """The complete ruleset text, ready for `nft -f`."""
    opts.check()
    out: list[str] = []
    out += _header(opts)
    out.append(f"table inet {TABLE} {{")
    out += _sets(opts)
    out += _nat_chain(opts)
    out += _input_chain(opts)
    out += _forward_chain(opts)
    out.append("}")
    return "\n".join(out) + "\n"


def _header(opts: RulesetOptions) -> list[str]:
    ports = _port_text(opts)
    return [
        "#!/usr/sbin/nft -f",
        f"# socialguard transparent-proxy ruleset, mode {opts.mode.value}. Generated by:",
        f"#   {opts.command}",
        "#",
        "# Apply:     nft -f socialguard.nft       (touches only the table below, atomically)",
        f"# Roll back: nft delete table inet {TABLE}",
        f"# The proxy must run as `socialguard run --mode transparent` listening on {ports}.",
        "# Needs: net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1,",
        "#        net.ipv4.conf.all.send_redirects=0 (see the README).",
        "",
        *_reset(opts),
    ]


NAT_HOOK = "type nat hook prerouting priority dstnat; policy accept;"
INPUT_HOOK = "type filter hook input priority filter; policy accept;"
FORWARD_HOOK = "type filter hook forward priority filter; policy accept;"
CHAINS = (("prerouting", NAT_HOOK), ("input", INPUT_HOOK), ("forward", FORWARD_HOOK))


def _reset(opts: RulesetOptions) -> list[str]:
    """Create what is missing, then empty the chains and district sets, in the same transaction."""
    district = [fam for fam in (V4, V6) if _subnets_of(opts, fam)]
    out = [
        "# Re-applying this file is idempotent and atomic: what is missing is created, the chains",
        "# and district subnets are emptied and refilled below, and the steered sets keep the",
        "# addresses already in them (emptying them would let cached lookups bypass the proxy).",
        f"table inet {TABLE} {{",
    ]
    out += [f"    chain {name} {{ {hook} }}" for name, hook in CHAINS]
    out += [
        f"    set district_{fam.suffix} {{ type {fam.addr_type}; flags interval; }}"
        for fam in district
    ]
    out.append("}")
    out += [f"flush chain inet {TABLE} {name}" for name, _ in CHAINS]
    out += [f"flush set inet {TABLE} district_{fam.suffix}" for fam in district]
    out.append("")
    return out


def _port_text(opts: RulesetOptions) -> str:
    if opts.workers == 1:
        return f"port {opts.proxy_port}"
    return f"ports {opts.proxy_port}-{opts.ports[-1]} ({opts.workers} workers)"


def _subnets_of(opts: RulesetOptions, fam: _Family) -> list[Network]:
    return [s for s in opts.subnets if s.version == fam.version]


def _sets(opts: RulesetOptions) -> list[str]:
    out: list[str] = []
    for fam in (V4, V6):
        nets = _subnets_of(opts, fam)
        if nets:
            elements = ", ".join(str(n) for n in nets)
            out += [
                f"    # District subnets ({fam.nfproto}): only these clients are handled.",
                f"    set district_{fam.suffix} {{",
                f"        type {fam.addr_type}; flags interval;",
                f"        elements = {{ {elements} }}",
                "    }",
            ]
    if opts.mode is Mode.STEERED:
        for fam in (V4, V6):
            out += [
                "    # Filled by the district resolver (dnsmasq nftset=, `socialguard deploy "
                "dnsmasq`).",
                f"    set {SOCIAL_SET}_{fam.suffix} {{ type {fam.addr_type}; }}",
                f"    set {DOH_SET}_{fam.suffix} {{ type {fam.addr_type}; }}",
            ]
    if out:
        out.append("")
    return out


def _from_district(opts: RulesetOptions, fam: _Family) -> str:
    """The match for 'a district client of this family': its subnets, else the whole interface."""
    if _subnets_of(opts, fam):
        return f"{fam.name} saddr @district_{fam.suffix}"
    return f"meta nfproto {fam.nfproto}"


def _lan_match(opts: RulesetOptions) -> str:
    if len(opts.lan) == 1:
        return f'"{opts.lan[0]}"'
    return "{ " + ", ".join(f'"{i}"' for i in opts.lan) + " }"


def _redirect_target(opts: RulesetOptions, fam: _Family) -> str:
    if opts.workers == 1:
        return f"redirect to :{opts.proxy_port}"
    mapping = ", ".join(f"{i} : {port}" for i, port in enumerate(opts.ports))
    return f"redirect to :jhash {fam.name} saddr mod {opts.workers} map {{ {mapping} }}"


def _nat_chain(opts: RulesetOptions) -> list[str]:
    out = [
        "    chain prerouting {",
        f"        {NAT_HOOK}",
        f"        iifname != {_lan_match(opts)} return",
        *_portal_rules(opts),
        "        # Connections to this router itself (its own services) are left alone.",
        "        fib daddr type local return",
    ]
    web = "tcp dport { 80, 443 }"
    for fam in (V4, V6):
        src = _from_district(opts, fam)
        target = _redirect_target(opts, fam)
        if opts.mode is Mode.FULL:
            out += [
                f"        # {fam.nfproto}: every web connection from the district to the proxy.",
                f"        {src} tcp dport {{ 80, 443 }} {target}",
            ]
        else:
            out += [
                f"        # {fam.nfproto}: only connections to addresses of domains the policy "
                "concerns,",
                "        # and of DNS-over-HTTPS endpoints (the proxy blocks the doh category).",
                f"        {src} {fam.name} daddr @{SOCIAL_SET}_{fam.suffix} {web} {target}",
                f"        {src} {fam.name} daddr @{DOH_SET}_{fam.suffix} {web} {target}",
            ]
            out += _dns_rules(opts, fam, src)
    out += ["    }", ""]
    return out


def _portal_rules(opts: RulesetOptions) -> list[str]:
    """The sign-in portal's name points at this router: its web connections go to the proxy,
    which answers the portal itself (the router's other services stay its own)."""
    out = []
    for fam in (V4, V6):
        addrs = [a for a in opts.portals if a.version == fam.version]
        if addrs:
            dest = str(addrs[0]) if len(addrs) == 1 else "{ " + ", ".join(map(str, addrs)) + " }"
            out += [
                f"        # {fam.nfproto}: the sign-in portal (this router's address) is the "
                "proxy's.",
                f"        {_from_district(opts, fam)} {fam.name} daddr {dest} tcp dport "
                f"{{ 80, 443 }} {_redirect_target(opts, fam)}",
            ]
    return out


def _dns_rules(opts: RulesetOptions, fam: _Family, src: str) -> list[str]:
    """Steered mode: every DNS query goes to the district resolver, so the sets see every lookup."""
    resolver = next((r for r in opts.resolvers if r.version == fam.version), None)
    if resolver is None:
        return [
            f"        # {fam.nfproto}: DNS to any server is answered by this router's resolver.",
            f"        {src} meta l4proto {{ tcp, udp }} th dport 53 redirect to :53",
        ]
    target = f"{resolver}:53" if fam is V4 else f"[{resolver}]:53"
    return [
        f"        # {fam.nfproto}: DNS to any server is answered by the district resolver.",
        f"        {src} {fam.name} saddr != {resolver} meta l4proto {{ tcp, udp }} th dport 53 "
        f"dnat {fam.name} to {target}",
    ]


def _input_chain(opts: RulesetOptions) -> list[str]:
    first, last = opts.ports[0], opts.ports[-1]
    ports = str(first) if first == last else f"{first}-{last}"
    return [
        "    chain input {",
        f"        {INPUT_HOOK}",
        "        # The proxy's ports take only redirected connections: a client connecting to them",
        "        # directly would make the proxy connect to itself.",
        f"        iifname {_lan_match(opts)} tcp dport {ports} ct status dnat accept",
        f"        iifname {_lan_match(opts)} tcp dport {ports} drop",
        "    }",
        "",
    ]


def _forward_chain(opts: RulesetOptions) -> list[str]:
    out = [
        "    chain forward {",
        f"        {FORWARD_HOOK}",
        f"        iifname != {_lan_match(opts)} return",
    ]
    for fam in (V4, V6):
        src = _from_district(opts, fam)
        out += [
            f"        # {fam.nfproto}: QUIC / HTTP/3 is invisible to the proxy; browsers fall back "
            "to TCP.",
            f"        {src} udp dport {{ 80, 443 }} drop",
            f"        # {fam.nfproto}: DNS-over-TLS would hide lookups from the district resolver.",
            f"        {src} meta l4proto {{ tcp, udp }} th dport 853 drop",
        ]
    out.append("    }")
    return out


def command_line(argv: Sequence[str]) -> str:
    """The command that produced a ruleset, for its header comment."""
    return " ".join(argv)
