"""The district resolver's configuration for a steered deployment, and the browsers' canary answers.

In steered mode (see `deploy/nftables.py`) only connections to addresses of domains the policy
concerns go through the proxy. Which addresses those are is learnt where names become addresses:
dnsmasq's `nftset=` adds every A/AAAA answer for a listed domain (and its subdomains) to an nftables
set, and the router redirects connections to that set. The list is every domain of every category
any rule names, the rules' own domains and approved-page hosts, the `doh` category, and the
sign-in hosts `accounts:` restricts (their requests get the restriction headers at the proxy).

The canary answers work in both modes: NXDOMAIN for `use-application-dns.net` makes Firefox keep
its automatic DNS-over-HTTPS off on this network; NXDOMAIN for `mask.icloud.com` and
`mask-h2.icloud.com` makes Apple devices turn iCloud Private Relay off (its traffic would bypass
the proxy unseen).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from socialguard.engine.accounts import sign_in_domains

from .nftables import DOH_SET, SOCIAL_SET, TABLE

__all__ = ["CANARIES", "SteeredDomains", "minimal_domains", "render_dnsmasq", "steered_domains"]

DOH_CATEGORY = "doh"
CANARIES: tuple[tuple[str, str], ...] = (
    ("use-application-dns.net", "Firefox: NXDOMAIN keeps its automatic DNS-over-HTTPS off"),
    ("mask.icloud.com", "Apple iCloud Private Relay: NXDOMAIN turns it off on this network"),
    ("mask-h2.icloud.com", "Apple iCloud Private Relay (HTTP/2 fallback): same"),
)
# dnsmasq reads configuration lines into a fixed buffer; stay well below it.
MAX_LINE = 900


@dataclass(frozen=True, slots=True)
class SteeredDomains:
    """The domains whose addresses go into the steered sets, and what steering cannot cover."""

    social: tuple[str, ...]
    doh: tuple[str, ...]
    notes: tuple[str, ...] = ()


def minimal_domains(domains: Iterable[str]) -> tuple[str, ...]:
    """Sorted, without duplicates and without names whose parent is listed (dnsmasq matches
    subdomains already): `facebook.com` covers `m.facebook.com`."""
    unique = {d.strip().lower().rstrip(".") for d in domains if d and d.strip()}
    kept: set[str] = set()
    for domain in sorted(unique, key=lambda d: d.count(".")):
        labels = domain.split(".")
        if any(".".join(labels[i:]) in kept for i in range(1, len(labels))):
            continue
        kept.add(domain)
    return tuple(sorted(kept, key=lambda d: (d.split(".")[::-1], d)))


def _index_items(index: Any) -> Iterable[tuple[str, frozenset[str]]]:
    """(domain, tags) pairs of the policy's domain index."""
    return index.items()  # type: ignore[no-any-return]


def steered_domains(policy: Any) -> SteeredDomains:
    """Every domain any rule of the compiled policy names (by category or directly), plus `doh`.

    `policy` is a `socialguard.engine.compiled.CompiledPolicy`.
    """
    tags: set[str] = set()
    hosts: set[str] = set()
    notes: list[str] = []
    for rule in policy.rules:
        tags.update(rule.tags)
        hosts.update(url.host for url in rule.urls)
        if rule.any_destination:
            notes.append(
                f"rule {rule.id} ({rule.source or 'rules file'}) concerns every destination: "
                "steered mode applies it only to the steered addresses; use --mode full to "
                "enforce it everywhere."
            )
    sign_in = sign_in_domains(getattr(policy, "accounts", None))
    if sign_in:
        hosts.update(sign_in)
        notes.append(
            "accounts: restricts sign-in on " + ", ".join(sign_in) + ": their addresses are "
            "steered so that the proxy can add the restriction headers (all of google.com then "
            "goes through the proxy and is decrypted there, as in full mode)."
        )
    doh_tag = f"category:{DOH_CATEGORY}"
    social: set[str] = set(hosts)
    doh: set[str] = set()
    for domain, domain_tags in _index_items(policy.index):
        if doh_tag in domain_tags:
            doh.add(domain)
        elif not tags.isdisjoint(domain_tags):
            social.add(domain)
    if DOH_CATEGORY not in policy.categories:
        notes.append(
            "the policy has no `doh` category: DNS-over-HTTPS endpoints are not steered "
            "(DNS-over-TLS on port 853 is still dropped)."
        )
    networks = [str(net) for net, tag in policy.ip_index.entries if tag in tags]
    if networks:
        notes.append(
            "rules name address ranges ("
            + ", ".join(networks[:5])
            + (", ..." if len(networks) > 5 else "")
            + "); add them to the social sets' elements in the nftables ruleset to steer them."
        )
    doh_minimal = minimal_domains(doh)
    social_minimal = tuple(d for d in minimal_domains(social) if d not in set(doh_minimal))
    return SteeredDomains(social=social_minimal, doh=doh_minimal, notes=tuple(notes))


def _set_spec(set_base: str) -> str:
    return f"4#inet#{TABLE}#{set_base}_v4,6#inet#{TABLE}#{set_base}_v6"


def _chunks(domains: tuple[str, ...], budget: int) -> Iterable[tuple[str, ...]]:
    """Groups of domains whose `/a/b/c/` text stays within `budget` characters."""
    chunk: list[str] = []
    size = 1
    for domain in domains:
        if chunk and size + len(domain) + 1 > budget:
            yield tuple(chunk)
            chunk, size = [], 1
        chunk.append(domain)
        size += len(domain) + 1
    if chunk:
        yield tuple(chunk)


def _nftset_lines(domains: tuple[str, ...], set_base: str) -> list[str]:
    spec = _set_spec(set_base)
    budget = MAX_LINE - len("nftset=") - len(spec)
    return ["nftset=/" + "/".join(chunk) + "/" + spec for chunk in _chunks(domains, budget)]


def render_dnsmasq(
    domains: SteeredDomains | None,
    *,
    command: str = "socialguard deploy dnsmasq",
    extra_notes: Mapping[str, str] | None = None,
) -> str:
    """dnsmasq configuration: the canary answers, and (given `domains`) the nftset= lines."""
    out = [
        "# socialguard: dnsmasq configuration for the district resolver. Generated by:",
        f"#   {command}",
        "# Install as /etc/dnsmasq.d/socialguard.conf and restart dnsmasq (needs dnsmasq >= 2.87",
        "# built with nftset support: `dnsmasq --version` lists 'nftset').",
        "",
        "# Canary domains: browsers and operating systems ask these to learn whether the network",
        "# wants them to stay off encrypted DNS and relays. NXDOMAIN (`address=/name/` with no",
        "# address) is the documented answer.",
    ]
    for name, why in CANARIES:
        out += [f"# {why}", f"address=/{name}/"]
    if domains is None:
        return "\n".join(out) + "\n"
    out += [
        "",
        "# Steered mode: every address these domains (and their subdomains) resolve to is",
        f"# added to the nftables sets of `table inet {TABLE}`; the ruleset sends connections",
        "# to them to the proxy. Rerun this command after changing the rules or the lists.",
    ]
    for note in domains.notes:
        out.append(f"# NOTE: {note}")
    for name, text in (extra_notes or {}).items():
        out.append(f"# {name}: {text}")
    out += ["", f"# {len(domains.social)} domains the policy's rules name"]
    out += _nftset_lines(domains.social, SOCIAL_SET)
    out += ["", f"# {len(domains.doh)} DNS-over-HTTPS endpoints (category {DOH_CATEGORY})"]
    out += _nftset_lines(domains.doh, DOH_SET)
    return "\n".join(out) + "\n"
