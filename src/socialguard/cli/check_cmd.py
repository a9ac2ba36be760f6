"""`socialguard check`: would this person reach this URL at this moment, and why?

The dry run calls the same decide() the proxy calls, with the same policy file and (when the
state directory holds a store) the same grants and emergencies, so its answer is the proxy's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from pathlib import Path
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


def parse_at(text: str | None, zone: tzinfo) -> datetime:
    """`--at`: ISO-8601; without an offset it is the district's local time; omitted = now."""
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(f"--at: {text!r} is not an ISO-8601 time (e.g. 2026-12-01T10:00)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


@handles_errors
def check(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    url: Annotated[str, typer.Argument(help="The URL (http or https) to ask about.")],
    client: Annotated[
        str,
        typer.Option(
            "--client",
            "--from",
            help="The client's IP address; the identity sources say who holds it (see `who`).",
        ),
    ],
    user: Annotated[
        str | None, typer.Option("--user", help="Proxy-authenticated user name.")
    ] = None,
    mac: Annotated[
        str | None, typer.Option("--mac", help="The client's MAC (device inventory).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="ISO-8601 time; no offset = district local time (default: now)."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="HTTP method.")] = "GET",
    upload: Annotated[
        bool, typer.Option("--upload", help="The request carries a file upload.")
    ] = False,
    rules: RulesOption = None,
    state: StateOption = None,
    no_overrides: Annotated[
        bool, typer.Option("--no-overrides", help="Ignore grants and emergencies in the store.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Dry-run a decision: would this client reach URL at this time, and why?

    Prints the action, its basis (rule, grant, emergency, default), the rule, the category, the
    policy's reason, the groups the client resolves to, the connection-level verdict and the
    trace. Grants and emergencies in force are read from the store in --state when it exists.
    Without --user, the identity bindings in --state say who holds the address (as `socialguard
    who` shows): that person is the principal and the answer names the source.
    Exit 0 when allowed, 1 when blocked, 2 on bad input (or invalid rules).

    Example:

        socialguard check https://www.facebook.com/ --client 10.20.1.5 --at 2026-12-01T10:00
        socialguard check https://www.facebook.com/ --from 10.20.3.4 --state /var/lib/socialguard
    """
    from socialguard.engine import Overrides, decide, decide_connection
    from socialguard.errors import PolicyError
    from socialguard.policy import load_policy, request_from_url

    rules_file = paths.rules_path(rules)
    if not rules_file.is_file():
        raise fail(f"{rules_file}: rules file not found")
    try:
        policy = load_policy(rules_file)
    except PolicyError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE) from e
    now = parse_at(at, policy.district.timezone)
    try:
        request = request_from_url(url, method=method, upload=upload)
    except ValueError as e:
        raise fail(f"URL: {e}") from None
    try:
        principal = _principal(policy, client, user=user, mac=mac, state=state, now=now)
    except ValueError as e:
        raise fail(f"--client/--mac: {e}") from None
    overrides = Overrides.EMPTY if no_overrides else _overrides(state, now)
    decision = decide(policy, request, principal, now, overrides)
    connection = decide_connection(policy, request.host, principal, now, overrides)
    out = _as_dict(
        url,
        d=decision,
        connection=connection.verdict.value,
        now=now,
        zone=policy.district.timezone,
        rules_file=rules_file,
        policy=policy,
    )
    if as_json:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print(out)
    raise typer.Exit(EXIT_OK if decision.action.value == "allow" else EXIT_FAIL)


def _principal(
    policy: Any,
    client: str,
    *,
    user: str | None,
    mac: str | None,
    state: Path | None,
    now: datetime,
) -> Any:
    """Who the proxy would take the client to be: without a --user, the person the identity
    sources bound the address to at `now` (and the DHCP lease's MAC), as the proxy resolves it.
    Raises ValueError on a bad address or MAC."""
    from socialguard.engine import resolve_principal

    spec = policy.identity.spec
    if user is not None or (spec.radius is None and not spec.dhcp):
        return resolve_principal(policy, client, user=user, mac=mac)
    from socialguard.identity.who import who

    answer = who(policy, client, paths.state_dir(state), now.timestamp())
    if mac is None:
        return answer.principal
    return resolve_principal(policy, client, mac=mac, binding=answer.person)


def _overrides(state: Path | None, now: datetime) -> Any:
    """The store's snapshot when a store exists in the state directory; otherwise none."""
    from socialguard.engine import Overrides

    store_file = paths.store_path(state)
    if not store_file.is_file():
        return Overrides.EMPTY
    from socialguard.overrides import open_store

    store = open_store(store_file)
    try:
        return store.snapshot(now)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _as_dict(
    url: str, *, d: Any, connection: str, now: datetime, zone: tzinfo, rules_file: Path, policy: Any
) -> dict[str, Any]:
    rule = policy.rules_by_id.get(d.rule_id) if d.rule_id else None
    return {
        "action": d.action.value,
        "basis": d.basis.value,
        "rule": d.rule_id,
        "rule_source": rule.source if rule else None,
        "category": d.category,
        "service": d.service,
        "service_name": policy.services.name_of(d.service),
        "matched_domain": d.matched_domain,
        "reason": d.reason,
        "override_id": d.override_id,
        "bypass": sorted(b.value for b in d.bypass),
        "url": url,
        "host": d.host,
        "client": d.principal.client_ip,
        "user": d.principal.user,
        "identified_by": d.principal.source,
        "device": d.principal.device,
        "groups": sorted(d.principal.groups),
        "at": now.astimezone(zone).isoformat(),
        "connection": connection,
        "policy_version": d.policy_version,
        "rules_file": str(rules_file),
        "trace": [{"step": s.step, "outcome": s.outcome} for s in d.trace],
    }


def _print(o: dict[str, Any]) -> None:
    typer.echo(f"{o['action'].upper()}  {o['url']}")
    who = (
        o["client"]
        + (f" user {o['user']}" if o["user"] else "")
        + (f" (identified by {o['identified_by']})" if o["identified_by"] else "")
        + (f" device {o['device']}" if o["device"] else "")
    )
    typer.echo(f"  who:        {who} → groups: {', '.join(o['groups']) or '(none)'}")
    typer.echo(f"  at:         {o['at']}")
    typer.echo(
        f"  basis:      {o['basis']}" + (f" ({o['override_id']})" if o["override_id"] else "")
    )
    if o["rule"]:
        typer.echo(f"  rule:       {o['rule']} ({o['rule_source']})")
    if o["service"]:
        typer.echo(f"  service:    {o['service_name']} ({o['service']})")
    if o["category"] or o["matched_domain"]:
        typer.echo(f"  category:   {o['category'] or '-'} (matched {o['matched_domain']})")
    typer.echo(f"  reason:     {o['reason']}")
    if o["bypass"]:
        typer.echo(f"  bypass:     {', '.join(o['bypass'])} may lift this rule")
    typer.echo(f"  connection: {o['connection']} (TLS, before any request is seen)")
    typer.echo(f"  policy:     {o['rules_file']} version {o['policy_version']}")
    typer.echo("  trace:")
    for step in o["trace"]:
        typer.echo(f"    {step['step']}: {step['outcome']}")
