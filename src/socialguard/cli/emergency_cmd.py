"""`socialguard emergency`: declare and stop emergencies; review self-declared ones from the block
page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from socialguard.cli.actor import Gate, acting
from socialguard.cli.common import JsonOption, RulesOption, StateOption, domain_errors
from socialguard.cli.grant_cmd import (
    ByOption,
    ForOption,
    load_limits,
    opens,
    print_json,
    print_table,
    resolve_end,
    show_time,
    state_store,
    zone_of,
)
from socialguard.cli.helpfmt import HelpGroup
from socialguard.engine.roles import AdminAct
from socialguard.errors import ConfigError
from socialguard.overrides import EmergencyRecord, Limits, Store, utc_now
from socialguard.overrides.parse import (
    check_reason,
    check_scope,
    check_sites,
    domains_alone,
)
from socialguard.text import clip, printable

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    help="Emergencies: district-wide or per group, and self-declared ones awaiting review.",
    no_args_is_help=True,
)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat()


def emergency_as_dict(r: EmergencyRecord, now: datetime) -> dict[str, Any]:
    e = r.emergency
    return {
        "id": e.id,
        "scope": e.scope,
        "sites": list(e.sites),
        "starts": _iso(e.starts),
        "ends": _iso(e.ends),
        "reason": e.reason,
        "by": e.by,
        "source": r.source,
        "self_declared": e.self_declared,
        "person": r.person,
        "url": r.url,
        "status": r.status(now),
        "stopped_at": _iso(r.stopped_at),
        "stopped_by": r.stopped_by,
        "acked_at": _iso(r.acked_at),
        "acked_by": r.acked_by,
        "ack_note": r.ack_note,
    }


def _rows(records: list[EmergencyRecord], now: datetime, limits: Limits | None) -> list[list[str]]:
    zone = zone_of(limits)
    return [
        [
            r.emergency.id,
            r.emergency.scope,
            opens(r.emergency.sites, limits, sep=",") or "(every site)",
            show_time(r.emergency.starts, zone),
            show_time(r.emergency.ends, zone),
            "self" if r.emergency.self_declared else "admin",
            r.status(now),
            r.emergency.by,
            clip(r.emergency.reason, 40),
        ]
        for r in records
    ]


def _check_stop(gate: Gate, store: Store, emergency_id: str | None, limits: Limits | None) -> None:
    """Stopping is judged like starting: the actor's role must cover each emergency stopped
    (without an id: every administrator-declared one in force)."""
    now = utc_now()
    if emergency_id is not None:
        targets = [store.get_emergency(emergency_id)]
    else:
        targets = [
            r
            for r in store.list_emergencies(now)
            if not r.emergency.self_declared and r.status(now) == "active"
        ]
    for r in targets:
        e = r.emergency
        act = gate.act("emergency_stop", e.scope, e.sites, limits, every_site=not e.sites)
        gate.check(store, act, {"id": e.id})


HEADERS = ["ID", "SCOPE", "SITES", "STARTS", "ENDS", "KIND", "STATUS", "BY", "REASON"]


@app.command("start")
def start(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (goes in the audit log).  [required]")
    ] = None,
    for_: ForOption = None,
    scope: Annotated[
        str, typer.Option("--scope", help="all (district-wide) or group:NAME (a policy group).")
    ] = "all",
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            help="Only this site: a domain (opens its whole service: www.facebook.com opens all "
            "of Facebook), service:ID, category:NAME or domain:DOMAIN (that domain alone); "
            "repeatable. Default: every site a rule lets an emergency lift.",
        ),
    ] = None,
    domain_only: Annotated[
        bool,
        typer.Option(
            "--domain-only",
            help="Open each --site domain (and its subdomains) alone, not its whole service.",
        ),
    ] = False,
) -> None:
    """Declare an emergency: lifts every rule whose bypass allows it, for its scope.

    Without --for it lasts until `socialguard emergency stop`. The running proxy applies it within
    2 s.

    Example:

        socialguard emergency start --reason "Lockdown: reach families via district pages" --for 3h

    With --site it opens only those sites; a domain opens its whole service (like `grant add`):

        socialguard emergency start --site www.facebook.com --for 2h \\
            --reason "Lockdown: the district's Facebook page is how we reach families"
    """
    with domain_errors():
        if domain_only and not site:
            raise ConfigError("--domain-only: give the domains with --site")
        limits = load_limits(rules, required=scope.strip().lower() != "all" or bool(site))
        zone = zone_of(limits)
        why = check_reason(reason)
        where = check_scope(scope, limits)
        sites = check_sites(tuple(site), limits) if site else ()
        if domain_only:
            sites = domains_alone(sites)
        now = utc_now()
        ends = resolve_end(for_, None, now=now, zone=zone)
        gate = acting(by, rules, state)
        with state_store(state) as store:
            act = gate.act("emergency_start", where, sites, limits, every_site=not sites)
            gate.check(store, act, {"sites": list(sites), "ends": _iso(ends)})
            e = store.start_emergency(where, ends, why, gate.actor, sites=sites)
            record = store.get_emergency(e.id)
    if as_json:
        print_json(emergency_as_dict(record, now))
        return
    typer.echo(e.id)
    on = f" on {opens(e.sites, limits)}" if e.sites else ""
    typer.echo(
        f"emergency in force for {e.scope}{on}, {show_time(e.ends, zone)}"
        if e.ends is None
        else f"emergency in force for {e.scope}{on} until {show_time(e.ends, zone)}"
    )


@app.command("stop")
def stop(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    emergency_id: Annotated[
        str | None,
        typer.Argument(metavar="[ID]", help="The emergency to stop (default: every one in force)."),
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (goes in the audit log).")
    ] = "stopped",
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop an emergency now (without ID: every administrator-declared emergency in force).

    Without ID and with none in force there is nothing to do: it says so and exits 0 (the state
    asked for holds). A named emergency that does not exist, or has already ended, exits 2.

    Example:

        socialguard emergency stop e-4m2k7q9xza
    """
    from socialguard.overrides.store import StateError

    with domain_errors():
        limits = load_limits(rules, required=False)
        why = check_reason(reason)
        gate = acting(by, rules, state)
        with state_store(state) as store:
            if gate.roles.configured:
                _check_stop(gate, store, emergency_id, limits)
            try:
                stopped = store.stop_emergencies(
                    None if emergency_id is None else [emergency_id], why, gate.actor
                )
            except StateError:
                if emergency_id is not None:
                    raise
                stopped = []
    now = utc_now()
    if as_json:
        print_json([emergency_as_dict(r, now) for r in stopped])
        return
    if not stopped:
        typer.echo("nothing to stop: no administrator-declared emergency is in force")
    for r in stopped:
        typer.echo(f"stopped {r.emergency.id} ({r.emergency.scope})")


@app.command("status")
def status(
    all_: Annotated[bool, typer.Option("--all", help="Include stopped and ended ones.")] = False,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Emergencies in force: administrator-declared and self-declared.

    Example:

        socialguard emergency status --json
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        now = utc_now()
        with state_store(state) as store:
            records = store.list_emergencies(now, include_all=all_)
    if as_json:
        print_json([emergency_as_dict(r, now) for r in records])
        return
    if not records:
        typer.echo("no emergency in force")
        return
    print_table(HEADERS, _rows(records, now, limits))


@app.command("review")
def review(
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Self-declared emergencies (from the block page) awaiting an administrator's acknowledgement.

    Example:

        socialguard emergency review
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        zone = zone_of(limits)
        now = utc_now()
        gate = acting(None, rules, state)
        with state_store(state) as store:
            gate.check(store, AdminAct("emergency_review"))
            records = store.pending_reviews()
    if as_json:
        print_json([emergency_as_dict(r, now) for r in records])
        return
    if not records:
        typer.echo("nothing to review")
        return
    print_table(
        ["ID", "PERSON", "SITE", "STARTED", "ENDS", "STATUS", "REASON"],
        [
            [
                r.emergency.id,
                r.person or r.emergency.scope,
                opens(r.emergency.sites, limits, sep=","),
                show_time(r.emergency.starts, zone),
                show_time(r.emergency.ends, zone),
                r.status(now),
                clip(r.emergency.reason, 60),
            ]
            for r in records
        ],
    )


@app.command("ack")
def ack(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    emergency_id: Annotated[
        str, typer.Argument(metavar="ID", help="The self-declared emergency (e-...).")
    ],
    note: Annotated[str | None, typer.Option("--note", help="What the review found.")] = None,
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Acknowledge a self-declared emergency after review.

    Example:

        socialguard emergency ack e-4m2k7q9xza --note "Called the parent back; genuine"
    """
    with domain_errors():
        load_limits(rules, required=False)
        text = note.strip() if note and note.strip() else None
        if note is not None and text is None:
            raise ConfigError("--note: empty; leave it out or say what the review found")
        gate = acting(by, rules, state)
        with state_store(state) as store:
            gate.check(store, AdminAct("emergency_ack", emergency_id))
            r = store.ack_emergency(emergency_id, text, gate.actor)
    if as_json:
        print_json(emergency_as_dict(r, utc_now()))
        return
    typer.echo(f"acknowledged {r.emergency.id} ({printable(r.person or r.emergency.scope)})")
