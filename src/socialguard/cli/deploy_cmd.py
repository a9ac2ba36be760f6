"""`socialguard deploy`: print the router's nftables ruleset and the resolver's dnsmasq lines."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from socialguard import paths
from socialguard.cli.common import RulesOption, handles_errors
from socialguard.cli.helpfmt import HelpGroup

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    help="Print firewall and resolver configuration for a transparent deployment.",
    no_args_is_help=True,
)


def _invocation() -> str:
    """The command as typed, for the generated file's header."""
    return "socialguard " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@app.command("nftables")
@handles_errors
def nftables(
    *,
    lan: Annotated[
        list[str],
        typer.Option("--lan", help="Interface the district's clients are on (repeatable)."),
    ],
    subnet: Annotated[
        list[str] | None,
        typer.Option(
            "--subnet",
            help="District subnet, IPv4 or IPv6 (repeatable). A family with none given is "
            "matched by interface alone.",
        ),
    ] = None,
    proxy_port: Annotated[
        int, typer.Option("--proxy-port", help="The proxy's (first worker's) port.")
    ] = 8080,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="full: every web connection goes to the proxy. steered: only those to "
            "addresses of domains the policy concerns (with `socialguard deploy dnsmasq`).",
        ),
    ] = "full",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Proxy processes on consecutive ports (`socialguard run --workers N`); "
            "clients are spread by source-address hash.",
        ),
    ] = 1,
    resolver: Annotated[
        list[str] | None,
        typer.Option(
            "--resolver",
            help="Steered mode: the district resolver's address, one per family (default: "
            "the resolver on this router).",
        ),
    ] = None,
    portal: Annotated[
        list[str] | None,
        typer.Option(
            "--portal",
            help="This router's address that the sign-in portal's name resolves to "
            "(repeatable): its web connections go to the proxy, which serves the portal.",
        ),
    ] = None,
) -> None:
    """Print an nftables ruleset sending district web traffic to the proxy.

    Redirects TCP 80/443 (all of it, or in steered mode only the policy's destinations) to the
    transparent proxy, drops QUIC (UDP 80/443) and DNS-over-TLS (853), IPv4 and IPv6 alike.
    Apply with `nft -f`; roll back with `nft delete table inet socialguard`.

    Example:

        socialguard deploy nftables --lan eth1 --subnet 10.20.0.0/16 --subnet fd20::/48
    """
    from socialguard.deploy.nftables import (
        Mode,
        RulesetOptions,
        parse_portal,
        parse_resolver,
        parse_subnet,
        render_ruleset,
    )
    from socialguard.errors import ConfigError

    try:
        chosen = Mode(mode)
    except ValueError as e:
        raise ConfigError(f"--mode {mode!r}: choose full or steered") from e
    opts = RulesetOptions(
        lan=tuple(lan),
        subnets=tuple(parse_subnet(s) for s in subnet or ()),
        proxy_port=proxy_port,
        mode=chosen,
        workers=workers,
        resolvers=tuple(parse_resolver(r) for r in resolver or ()),
        portals=tuple(parse_portal(p) for p in portal or ()),
        command=_invocation(),
    )
    typer.echo(render_ruleset(opts), nl=False)


@app.command("dnsmasq")
@handles_errors
def dnsmasq(
    rules: RulesOption = None,
    canaries_only: Annotated[
        bool,
        typer.Option(
            "--canaries-only",
            help="Only the canary answers (full mode needs no nftset= lines).",
        ),
    ] = False,
) -> None:
    """Print dnsmasq configuration: canary answers and, for steered mode, nftset= lines.

    The nftset= lines cover every domain of every category a rule uses, the rules' own domains
    and the doh category; rerun after changing the rules or lists.

    Example:

        socialguard deploy dnsmasq --rules rules/policy.yaml > /etc/dnsmasq.d/socialguard.conf
    """
    from socialguard.deploy.dnsmasq import render_dnsmasq, steered_domains

    if canaries_only:
        typer.echo(render_dnsmasq(None, command=_invocation()), nl=False)
        return
    policy = _load_policy(paths.rules_path(rules))
    text = render_dnsmasq(steered_domains(policy), command=_invocation())
    typer.echo(text, nl=False)


def _load_policy(path: Path) -> object:
    from socialguard.policy import load_policy  # type: ignore[attr-defined]

    return load_policy(path)
