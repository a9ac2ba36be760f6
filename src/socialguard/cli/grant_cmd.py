"""`socialguard grant`: temporary exceptions granted by administration, and access requests.

The CLI only parses, calls the store and prints; validation lives in `socialguard.overrides.parse`
and
the store. Every change is checked completely before anything is written (exit 2 on bad input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any

import typer

from socialguard import paths
from socialguard.cli.actor import acting
from socialguard.cli.common import JsonOption, RulesOption, StateOption, domain_errors
from socialguard.cli.helpfmt import HelpGroup
from socialguard.errors import ConfigError, PolicyError
from socialguard.overrides import (
    AccessRequest,
    GrantRecord,
    Limits,
    Store,
    open_store,
    parse_duration,
    parse_until,
    utc_now,
)
from socialguard.overrides.parse import (
    check_grant_end,
    check_reason,
    check_sites,
    check_who,
    domains_alone,
)
from socialguard.text import clip, printable

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    help="Temporary exceptions granted by administration, and access requests from the block page.",
    no_args_is_help=True,
)

ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Who is making the change: the real OS user (the sudo user under sudo); with "
        "roles: in the rules file it may only repeat that name.",
    ),
]
ForOption = Annotated[
    str | None, typer.Option("--for", help="How long: 45m, 2h, 3d (or a sum such as 1h30m).")
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="When it ends: HH:MM today or an ISO-8601 time (district zone)."),
]
AllOption = Annotated[bool, typer.Option("--all", help="Include ended, revoked and answered ones.")]


# -- shared by grant and emergency commands --------------------------------------------------------


@contextmanager
def state_store(state: Path | None) -> Iterator[Store]:
    """The store `run` uses (`--state`, else SOCIALGUARD_STATE, else var/), closed after use."""
    store = open_store(paths.store_path(state))
    try:
        yield store
    finally:
        store.close()


def load_limits(rules: Path | None, *, required: bool) -> Limits | None:
    """The policy's limits and names. Changes need them (required); listings only use the zone."""
    path = paths.rules_path(rules)
    if not path.is_file():
        if required:
            raise ConfigError(
                f"{path}: rules file not found (give --rules or set SOCIALGUARD_RULES); "
                "changes are checked against the policy's groups, categories and limits"
            )
        return None
    from socialguard.policy import load_policy

    try:
        return Limits.from_policy(load_policy(path))
    except PolicyError:
        if required:
            raise
        typer.echo(f"warning: {path} is invalid; times shown in UTC", err=True)
        return None


def zone_of(limits: Limits | None) -> tzinfo:
    return limits.timezone if limits is not None else UTC


def show_time(when: datetime | None, zone: tzinfo) -> str:
    """A time as the district reads it: local wall clock with the zone's abbreviation."""
    if when is None:
        return "until stopped"
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def resolve_end(
    for_: str | None, until: str | None, *, now: datetime, zone: tzinfo
) -> datetime | None:
    """`--for` or `--until` (not both) → the end in UTC; None when neither was given."""
    if for_ is not None and until is not None:
        raise ConfigError("--for / --until: give one, not both")
    if for_ is not None:
        return now + parse_duration(for_)
    if until is not None:
        return parse_until(until, now=now, zone=zone)
    return None


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A plain aligned table (pipes and terminals alike); an empty listing says so. Every cell is
    shown `printable`: reasons, URLs and names may come from the block page's forms."""
    if not rows:
        typer.echo("(none)")
        return
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def opens(sites: tuple[str, ...] | list[str], limits: Limits | None, sep: str = ", ") -> str:
    """What the sites open, in the service's name where the policy is at hand:
    `www.facebook.com (all of Facebook)`; the sites as stored when the rules cannot be read."""
    if limits is None:
        return sep.join(sites)
    return sep.join(limits.describe((s,)) for s in sites)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat()


def grant_as_dict(r: GrantRecord, now: datetime) -> dict[str, Any]:
    g = r.grant
    return {
        "id": g.id,
        "who": g.who,
        "sites": list(g.sites),
        "starts": _iso(g.starts),
        "ends": _iso(g.ends),
        "reason": g.reason,
        "by": g.by,
        "request_id": g.request_id,
        "created": _iso(r.created),
        "source": r.source,
        "status": r.status(now),
        "revoked_at": _iso(r.revoked_at),
        "revoked_by": r.revoked_by,
        "revoke_reason": r.revoke_reason,
    }


def request_as_dict(r: AccessRequest, limits: Limits | None = None) -> dict[str, Any]:
    """A request as JSON; with the policy, `service` is the id of the service its site opens
    (what an approval grants), else null."""
    return {
        "id": r.id,
        "who": r.who,
        "site": r.site,
        "service": limits.service_of(r.site) if limits is not None else None,
        "url": r.url,
        "rule_id": r.rule_id,
        "decision_id": r.decision_id,
        "reason": r.reason,
        "created": _iso(r.created),
        "client_ip": r.client_ip,
        "status": r.status,
        "decided_at": _iso(r.decided_at),
        "decided_by": r.decided_by,
        "decision_note": r.decision_note,
        "grant_id": r.grant_id,
    }


# -- commands -------------------------------------------------------------------------------------


@app.command("add")
def add(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    who: Annotated[
        str | None,
        typer.Option(
            "--who",
            help="user:NAME, device:ID, ip:ADDR or group:NAME (a policy group).  [required]",
        ),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            help="A domain (opens its whole service: www.facebook.com opens all of Facebook), "
            "service:ID, category:NAME or domain:DOMAIN (that domain alone); repeatable.  "
            "[required]",
        ),
    ] = None,
    for_: ForOption = None,
    until: UntilOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (goes in the audit log).  [required]")
    ] = None,
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
    domain_only: Annotated[
        bool,
        typer.Option(
            "--domain-only",
            help="Open each --site domain (and its subdomains) alone, not its whole service.",
        ),
    ] = False,
) -> None:
    """Grant a temporary exception ("unless asked to do so by administration").

    Checked against the policy (--rules): the group or category must exist and the grant may last at
    most overrides.grant_max. Prints the grant id and when it ends, in the district's time zone. The
    running proxy applies it within 2 seconds.

    Example:

        socialguard grant add --who user:jdoe --site facebook.com --for 2h --reason "Yearbook page"

    A domain opens its whole service (the page's CDN, scripts and images too, or the page would not
    work); --domain-only keeps each domain to itself:

        socialguard grant add --who user:jdoe --site www.facebook.com --domain-only --for 1h \\
            --reason "Checking the district page's address"
    """
    with domain_errors():
        limits = load_limits(rules, required=True)
        now = utc_now()
        zone = zone_of(limits)
        if who is None:
            raise ConfigError("--who: required (user:NAME, device:ID, ip:ADDR or group:NAME)")
        who_key = check_who(who, limits)
        sites = check_sites(tuple(site or ()), limits)
        if domain_only:
            sites = domains_alone(sites)
        ends = resolve_end(for_, until, now=now, zone=zone)
        if ends is None:
            raise ConfigError("--for / --until: say how long the grant lasts (e.g. --for 2h)")
        check_grant_end(ends, now=now, limits=limits, field="--until" if until else "--for")
        why = check_reason(reason)
        gate = acting(by, rules, state)
        with state_store(state) as store:
            act = gate.act("grant_add", who_key, sites, limits, length=ends - now)
            gate.check(store, act, {"sites": list(sites), "ends": _iso(ends)})
            grant = store.add_grant(who_key, sites, now, ends, why, gate.actor)
    if as_json:
        print_json(
            {"id": grant.id, "who": grant.who, "sites": list(grant.sites), "ends": _iso(grant.ends)}
        )
        return
    typer.echo(grant.id)
    typer.echo(
        f"{grant.who} may reach {opens(grant.sites, limits)} until {show_time(grant.ends, zone)}"
    )


@app.command("list")
def list_(
    all_: AllOption = False,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """List grants in force (or scheduled); --all adds expired and revoked ones.

    Example:

        socialguard grant list --all --json
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        zone = zone_of(limits)
        now = utc_now()
        with state_store(state) as store:
            records = store.list_grants(now, include_all=all_)
    if as_json:
        print_json([grant_as_dict(r, now) for r in records])
        return
    print_table(
        ["ID", "WHO", "SITES", "ENDS", "STATUS", "BY", "REASON"],
        [
            [
                r.grant.id,
                r.grant.who,
                opens(r.grant.sites, limits, sep=","),
                show_time(r.grant.ends, zone),
                r.status(now),
                r.grant.by,
                clip(r.grant.reason, 40),
            ]
            for r in records
        ],
    )


@app.command("show")
def show(
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="The grant id (g-...).")],
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one grant with its history (who made it, from where, revoked by whom and why).

    Example:

        socialguard grant show g-7k2m9qxa3b
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        zone = zone_of(limits)
        now = utc_now()
        with state_store(state) as store:
            record = store.get_grant(grant_id)
    data = grant_as_dict(record, now)
    if as_json:
        print_json(data)
        return
    for key in (
        "id",
        "status",
        "who",
        "sites",
        "starts",
        "ends",
        "reason",
        "by",
        "source",
        "request_id",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
    ):
        value = data[key]
        if value is None:
            continue
        if key in ("starts", "ends", "revoked_at"):
            value = show_time(datetime.fromisoformat(value), zone)
        elif key == "sites":
            value = opens(value, limits)
        typer.echo(f"{key + ':':15}{printable(str(value))}")


@app.command("revoke")
def revoke(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    grant_id: Annotated[str, typer.Argument(metavar="ID", help="The grant id (g-...).")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (goes in the audit log).  [required]")
    ] = None,
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a grant now; the running proxy stops honouring it within 2 seconds.

    --rules is read, when it exists, only for the district's time zone (like every grant command).

    Example:

        socialguard grant revoke g-7k2m9qxa3b --reason "Project finished early"
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        why = check_reason(reason)
        gate = acting(by, rules, state)
        with state_store(state) as store:
            if gate.roles.configured:
                g = store.get_grant(grant_id).grant
                gate.check(store, gate.act("grant_revoke", g.who, g.sites, limits), {"id": g.id})
            record = store.revoke_grant(grant_id, why, gate.actor)
    if as_json:
        print_json(grant_as_dict(record, utc_now()))
        return
    typer.echo(f"revoked {record.grant.id} ({record.grant.who}: {', '.join(record.grant.sites)})")


@app.command("requests")
def requests(
    all_: AllOption = False,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """List access requests filed from the block page ("Ask administration for access").

    Example:

        socialguard grant requests --json
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        zone = zone_of(limits)
        with state_store(state) as store:
            reqs = store.list_requests(include_all=all_)
    if as_json:
        print_json([request_as_dict(r, limits) for r in reqs])
        return
    print_table(
        ["ID", "WHO", "SITE", "FILED", "STATUS", "REASON"],
        [
            [
                r.id,
                r.who,
                opens((r.site,), limits),
                show_time(r.created, zone),
                r.status,
                clip(r.reason, 40),
            ]
            for r in reqs
        ],
    )


@app.command("approve")
def approve(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    request_id: Annotated[str, typer.Argument(metavar="REQ", help="The request id (r-...).")],
    for_: ForOption = None,
    until: UntilOption = None,
    note: Annotated[
        str | None, typer.Option("--reason", help="Optional note; default: the request's reason.")
    ] = None,
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve an access request: grants its person that site for --for/--until.

    Example:

        socialguard grant approve r-3f9a2kq7xm --for 1h
    """
    with domain_errors():
        limits = load_limits(rules, required=True)
        zone = zone_of(limits)
        now = utc_now()
        ends = resolve_end(for_, until, now=now, zone=zone)
        if ends is None:
            raise ConfigError("--for / --until: say how long the grant lasts (e.g. --for 1h)")
        check_grant_end(ends, now=now, limits=limits, field="--until" if until else "--for")
        text = note.strip() if note and note.strip() else None
        gate = acting(by, rules, state)
        with state_store(state) as store:
            asked = store.get_request(request_id)
            act = gate.act("request_approve", asked.who, (asked.site,), limits, length=ends - now)
            gate.check(store, act, {"id": asked.id, "ends": _iso(ends)})
            req, grant = store.approve_request(request_id, ends, gate.actor, note=text)
            record = store.get_grant(grant.id)
    if as_json:
        print_json(
            {"request": request_as_dict(req, limits), "grant": grant_as_dict(record, utc_now())}
        )
        return
    typer.echo(grant.id)
    typer.echo(
        f"approved {req.id}: {grant.who} may reach "
        f"{opens(grant.sites, limits)} until "
        f"{show_time(grant.ends, zone)}"
    )


@app.command("deny")
def deny(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    request_id: Annotated[str, typer.Argument(metavar="REQ", help="The request id (r-...).")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (goes in the audit log).  [required]")
    ] = None,
    by: ByOption = None,
    rules: RulesOption = None,
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deny an access request.

    Example:

        socialguard grant deny r-3f9a2kq7xm --reason "Not for individual use"
    """
    with domain_errors():
        limits = load_limits(rules, required=False)
        why = check_reason(reason)
        gate = acting(by, rules, state)
        with state_store(state) as store:
            asked = store.get_request(request_id)
            act = gate.act("request_deny", asked.who, (asked.site,), limits)
            gate.check(store, act, {"id": asked.id})
            req = store.deny_request(request_id, why, gate.actor)
    if as_json:
        print_json(request_as_dict(req))
        return
    typer.echo(f"denied {req.id} ({req.who}: {req.site})")
