"""`socialguard who ADDRESS`: who holds this address now, according to which identity source."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from socialguard import paths
from socialguard.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    JsonOption,
    RulesOption,
    StateOption,
    fail,
    handles_errors,
)


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@handles_errors
def who(
    address: Annotated[str, typer.Argument(help="The client's IP address.")],
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show who an address is now: the person an identity source bound it to (RADIUS
    accounting), its DHCP lease, and the principal the proxy decides for (user, groups).

    Reads the same state the proxy uses: the bindings in the state directory and the lease files
    the rules' `identity:` section names. Exit 0 when a person is bound to the address, 1 when
    no one is, 2 on bad input.

    Example:

        socialguard who 10.20.3.4 --state /var/lib/socialguard
    """
    from socialguard.errors import PolicyError
    from socialguard.identity.who import who as find
    from socialguard.policy import load_policy

    rules_file = paths.rules_path(rules)
    if not rules_file.is_file():
        raise fail(f"{rules_file}: rules file not found")
    try:
        policy = load_policy(rules_file)
    except PolicyError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE) from e
    try:
        answer = find(policy, address, paths.state_dir(state), time.time())
    except ValueError as e:
        raise fail(f"ADDRESS: {e}") from None
    out = _as_dict(answer)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        _print(out)
    raise typer.Exit(EXIT_OK if answer.person is not None else EXIT_FAIL)


def _as_dict(answer: Any) -> dict[str, Any]:
    p, lease, person = answer.principal, answer.lease, answer.person
    return {
        "address": answer.address,
        "user": p.user,
        "source": p.source,
        "since": _when(person.start) if person else None,
        "until": _when(person.until) if person else None,
        "source_groups": sorted(person.groups) if person else [],
        "groups": sorted(p.groups),
        "mac": p.mac,
        "lease": lease is not None,
        "lease_until": _when(lease.until) if lease else None,
        "device": p.device,
    }


def _print(out: dict[str, Any]) -> None:
    if out["user"] and out["source"]:
        typer.echo(f"{out['address']}: {out['user']} (from {out['source']})")
        typer.echo(f"  since {out['since']}, until {out['until'] or 'the source ends it'}")
        typer.echo(f"  source groups: {', '.join(out['source_groups']) or '-'}")
    else:
        typer.echo(f"{out['address']}: no person bound (no identity source names one)")
    typer.echo(f"  policy groups: {', '.join(out['groups']) or '-'}")
    if out["mac"]:
        lease = f" (DHCP lease until {out['lease_until'] or 'never'})" if out["lease"] else ""
        typer.echo(f"  MAC {out['mac']}{lease}")
    if out["device"]:
        typer.echo(f"  device {out['device']}")
