"""`socialguard audit`: search, summarise, verify, follow and prune the decision log; make its key.

The commands only parse options, call `socialguard.audit` and print. Times are shown in the
district's zone: `--tz`, else the rules file's `district.timezone`, else America/Denver.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from socialguard import paths
from socialguard.cli.common import (
    EXIT_FAIL,
    JsonOption,
    LogDirOption,
    RulesOption,
    StateOption,
    domain_errors,
)
from socialguard.cli.helpfmt import HelpGroup
from socialguard.errors import AuditError, ConfigError
from socialguard.text import csv_cell, json_line, printable

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    help="The decision log: search, report, verify, tail, prune; keygen for checkpoint signing.",
    no_args_is_help=True,
)

DEFAULT_ZONE = "America/Denver"

TzOption = Annotated[
    str | None,
    typer.Option(
        "--tz", help="Time zone for input and output [default: the rules' district zone]."
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="From: 2026-11-28, 2026-11-28T08:00 (district zone), today, 24h, 7d."
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="Until (exclusive; a bare date includes that day)."),
]


def _zone(tz: str | None, rules: Path | None) -> ZoneInfo:
    """The district's zone: --tz, else the rules file's district.timezone, else the default."""
    name = tz
    if name is None:
        path = paths.rules_path(rules)
        if path.is_file():
            name = _zone_from_rules(path)
        elif rules is not None:
            raise ConfigError(f"{path}: rules file not found")
    try:
        return ZoneInfo(name or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"--tz {name!r}: not an IANA time zone (e.g. America/Denver)") from e


def _zone_from_rules(path: Path) -> str | None:
    """Only `district.timezone` of the top-level file: a search need not load every domain list."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the district's time zone: {e}") from e
    district = data.get("district") if isinstance(data, dict) else None
    zone = district.get("timezone") if isinstance(district, dict) else None
    return str(zone) if zone else None


def _log_dir(log_dir: Path | None, state: Path | None) -> Path:
    return paths.log_dir(log_dir, state)


def _filter(
    tz: ZoneInfo,
    *,
    since: str | None,
    until: str | None,
    **kw: Any,
) -> Any:
    from socialguard.audit.reader import Filter, parse_when

    now = datetime.now(UTC)
    return Filter(
        since=parse_when(since, tz, now=now) if since else None,
        until=parse_when(until, tz, now=now, end=True) if until else None,
        **kw,
    )


# -- search ---------------------------------------------------------------------------------------

COLUMNS = [
    "time",
    "action",
    "basis",
    "who",
    "groups",
    "host",
    "category",
    "service",
    "rule",
    "id",
    "node",
]


RECORD_KINDS = ("form", "admin")


def _one_of(option: str, value: str, known: Iterable[str], what: str) -> None:
    """Refuse a value nothing in the log can carry, with the nearest known one."""
    import difflib

    choices = sorted(set(known))
    if value in choices:
        return
    near = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ConfigError(f"{option} {value!r}: not {what} ({', '.join(choices)}){hint}")


def _check_filters(
    rules: Path | None,
    *,
    action: str | None,
    basis: str | None,
    category: str | None,
    who: str | None,
) -> None:
    """Typos exit 2 rather than print '0 records': outcomes and bases are fixed names; categories
    and groups are the rules file's (when it can be read)."""
    from socialguard.audit.reader import OUTCOMES
    from socialguard.engine.model import Basis

    if action is not None:
        _one_of("--action", action, OUTCOMES, "an outcome")
    if basis is not None:
        _one_of("--basis", basis, [*(b.value for b in Basis), *RECORD_KINDS], "a basis")
    names = _policy_names(rules) if category is not None or who else {}
    if category is not None and names.get("categories"):
        _one_of("--category", category, names["categories"], "a category of the rules")
    if who and who.startswith("group:") and names.get("groups"):
        _one_of("--who", who, [f"group:{g}" for g in names["groups"]], "a group of the rules")


def _policy_names(rules: Path | None) -> dict[str, list[str]]:
    """The categories and groups the top-level rules file names (not its includes' domains)."""
    import yaml

    path = paths.rules_path(rules)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: [str(k) for k in data[key]]
        for key in ("categories", "groups")
        if isinstance(data.get(key), dict)
    }


def _row(r: dict[str, Any], tz: ZoneInfo) -> list[str]:
    """One record's cells, each `printable` (what the network sent is shown, never obeyed)."""
    return [printable(cell) for cell in _cells(r, tz)]


def _cells(r: dict[str, Any], tz: ZoneInfo) -> list[str]:
    from socialguard.audit.reader import local_time
    from socialguard.audit.report import person_of

    when = local_time(str(r.get("ts")), tz).strftime("%Y-%m-%d %H:%M:%S")
    if r.get("type") != "decision":
        return [
            when,
            str(r.get("action") or r.get("outcome") or ""),
            str(r.get("type")),
            f"by {r['by']}" if r.get("by") else str(r.get("client") or ""),
            "",
            str(r.get("target") or r.get("host") or ""),
            "",
            "",
            str(r.get("reason") or ""),
            str(r.get("decision_id") or ""),
            str(r.get("node")),
        ]
    host = str(r.get("host") or "")
    if r.get("sni"):
        host += f" (sni {r['sni']})"
    return [
        when,
        str(r.get("action") or ""),
        str(r.get("basis") or ""),
        person_of(r),
        ",".join(r.get("groups") or []),
        host,
        str(r.get("category") or ""),
        str(r.get("service") or ""),
        str(r.get("rule") or ""),
        str(r.get("decision_id") or r.get("override_id") or ""),
        str(r.get("node") or ""),
    ]


def _print_table(rows: Iterator[list[str]], batch: int = 200) -> int:
    """Aligned columns, computed per batch so output starts at once and memory stays flat."""
    n = 0
    header_done = False
    chunk: list[list[str]] = []

    def flush() -> None:
        nonlocal header_done
        widths = [max(len(c), *(len(r[i]) for r in chunk)) for i, c in enumerate(COLUMNS)]
        widths = [min(w, 40) for w in widths]
        if not header_done:
            typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
            header_done = True
        for r in chunk:
            typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        chunk.clear()

    for row in rows:
        chunk.append(row)
        n += 1
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    return n


@app.command("search")
def search(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    since: SinceOption = None,
    until: UntilOption = None,
    who: Annotated[
        str | None,
        typer.Option("--who", help="user:NAME, device:ID, ip:ADDR (or ip:NET/BITS) or group:NAME."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Domain (and its subdomains).")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Category name.")] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="allow or block (a request's outcome); pass or inspect (a connection's verdict, "
            "as /metrics names it).",
        ),
    ] = None,
    basis: Annotated[
        str | None,
        typer.Option(
            "--basis",
            help="rule, grant, emergency, default or error; form (block-page forms) or admin "
            "(administrators' changes).",
        ),
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Rule id.")] = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="Service id (facebook, tiktok, ...: rules/services.yaml): every domain of it.",
        ),
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin/--no-admin", help="Include administrators' changes.")
    ] = True,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    tz: TzOption = None,
    rules: RulesOption = None,
    log_dir: LogDirOption = None,
    state: StateOption = None,
) -> None:
    """Find decisions (and administrators' changes) in the log, oldest first.

    Reads every node's chain, rotated and gzipped files included, streaming.

    Example: socialguard audit search --since 2026-11-28 --who group:staff --action block --host
    facebook.com
    """
    from socialguard.audit.reader import Who
    from socialguard.audit.reader import search as run_search
    from socialguard.audit.schema import TYPE_DECISION

    with domain_errors():
        if as_json and as_csv:
            raise ConfigError("--json and --csv cannot be used together")
        _check_filters(rules, action=action, basis=basis, category=category, who=who)
        zone = _zone(tz, rules)
        types: set[str] | None
        if basis in RECORD_KINDS:  # shown in the basis column: the record's kind
            types, basis = {basis}, None
        else:
            decision_only = any(
                v is not None for v in (category, action, basis, rule, host, service)
            )
            types = None if admin and not decision_only else {TYPE_DECISION}
        flt = _filter(
            zone,
            since=since,
            until=until,
            who=Who.parse(who) if who else None,
            host=host,
            category=category,
            action=action,
            basis=basis,
            rule=rule,
            service=service.strip().lower() if service else None,
            types=None if types is None else frozenset(types),
        )
        found = run_search(_log_dir(log_dir, state), flt)
        if as_json:
            _write_raw(json_line(f.raw) for f in found)  # the stored line is already JSON
        elif as_csv:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(COLUMNS)
            for f in found:
                writer.writerow([csv_cell(cell) for cell in _row(f.record, zone)])
        else:
            n = _print_table(_row(f.record, zone) for f in found)
            typer.echo(f"{n} records (times in {zone.key})", err=True)


def _write_raw(lines: Iterator[bytes], batch: int = 1 << 18) -> None:
    """Write lines to stdout in large batches (one system call per ~256 KiB, not per line)."""
    out = sys.stdout.buffer
    pending: list[bytes] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= batch:
            out.write(b"".join(pending))
            pending.clear()
            size = 0
    out.write(b"".join(pending))
    out.flush()


# -- report ---------------------------------------------------------------------------------------


@app.command("report")
def report(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    since: SinceOption = None,
    until: UntilOption = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")
    ] = None,
    pdf_file: Annotated[
        Path | None,
        typer.Option("--pdf", help="Also write the report as PDF here (needs Chromium)."),
    ] = None,
    paper: Annotated[
        str, typer.Option("--paper", help="Page size of the print layout and PDF: letter or a4.")
    ] = "letter",
    names: Annotated[
        bool,
        typer.Option(
            "--names",
            help="Name people in the report (text, HTML, PDF) [default: a code per person].",
        ),
    ] = False,
    as_json: JsonOption = False,
    tz: TzOption = None,
    rules: RulesOption = None,
    log_dir: LogDirOption = None,
    state: StateOption = None,
) -> None:
    """Summarise a period: blocked visits and requests by service, person, day, hour and group;
    access requests and their answers; grants used and unused; emergencies; refused forms.

    The HTML and PDF report states the district, the period, when it was made and what
    `audit verify` says of the log. Every form (text, HTML, PDF) shows each person as a stable code
    (the same in every report, keyed by `<state>/report.key`) unless --names; --json is the raw
    figures for scripts and names people.

    Example: socialguard audit report --since 2026-11-01 --until 2026-11-30 --pdf november.pdf
    """
    from socialguard.audit.reader import search as run_search
    from socialguard.audit.report import pseudonymiser, render_text, show_names, summarise

    if paper.lower() not in ("letter", "a4"):
        raise typer.BadParameter("--paper must be letter or a4", param_hint="--paper")
    with domain_errors():
        zone = _zone(tz, rules)
        flt = _filter(zone, since=since, until=until)
        where = _log_dir(log_dir, state)
        policy = _report_policy(rules)
        summary = summarise(
            run_search(where, flt),
            zone,
            since=since,
            until=until,
            describe=_describe_sites(policy),
            group_parents=dict(policy.group_parents) if policy is not None else None,
        )
        if as_json:
            typer.echo(json.dumps(_summary_json(summary), indent=2, sort_keys=True))
            if html_file is None and pdf_file is None:
                return
        # one naming for the text and the board's copy: the same codes (`<state>/report.key`)
        people = show_names if names else pseudonymiser(_pseudonym_key(state))
        if not as_json:
            typer.echo(render_text(summary, people), nl=False)
        if html_file is None and pdf_file is None:
            return
        page = _board_html(
            summary, zone, where, rules=rules, state=state, people=people, paper=paper
        )
        if html_file is not None:
            try:
                html_file.write_text(page, encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"{html_file}: cannot write: {e.strerror}") from e
            typer.echo(f"wrote {html_file}", err=True)
        if pdf_file is not None:
            from socialguard.audit.pdf import print_pdf

            print_pdf(page, pdf_file)
            typer.echo(f"wrote {pdf_file}", err=True)


def _board_html(
    summary: Any,
    zone: ZoneInfo,
    where: Path,
    *,
    rules: Path | None,
    state: Path | None,
    people: Any,
    paper: str,
) -> str:
    """The report for a board: district, when made, the log's integrity, people as `people`
    names them (codes unless --names)."""
    from socialguard.audit.report import Integrity, render_html
    from socialguard.audit.verify import VERDICT_LINES, verdict, verify_log

    default = paths.checkpoint_dir(None, state)
    result = verify_log(where, checkpoints=default if default.is_dir() else None)
    found = verdict(result)
    return render_html(
        summary,
        district=_district_name(rules) or "",
        generated_at=datetime.now(zone).strftime("%Y-%m-%d %H:%M %Z"),
        integrity=Integrity(found.value, VERDICT_LINES[found]),
        people=people,
        paper=paper,
    )


def _district_name(rules: Path | None) -> str | None:
    """`district.name` of the top-level rules file, if there is one."""
    import yaml

    path = paths.rules_path(rules)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the district's name: {e}") from e
    district = data.get("district") if isinstance(data, dict) else None
    name = district.get("name") if isinstance(district, dict) else None
    return str(name) if name else None


def _pseudonym_key(state: Path | None) -> bytes | None:
    """The key that makes a person's code the same in every report: `<state>/report.key`,
    made on first use (mode 0600). None (codes for this report alone) if it cannot be kept."""
    import os
    import secrets

    path = paths.state_dir(state) / "report.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError as e:
        typer.echo(f"warning: {path}: {e.strerror}; codes are for this report only", err=True)
        return None
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    except FileExistsError:
        return path.read_bytes()
    except OSError as e:
        typer.echo(f"warning: {path}: {e.strerror}; codes are for this report only", err=True)
        return None
    return key


def _report_policy(rules: Path | None) -> Any:
    """The current rules, compiled, for what the report names from them (services, the groups'
    nesting); None when they cannot be loaded (the report then shows what was recorded)."""
    from socialguard.errors import PolicyError
    from socialguard.policy import load_policy

    path = paths.rules_path(rules)
    if not path.is_file():
        return None
    try:
        return load_policy(path)
    except PolicyError:
        return None


def _describe_sites(policy: Any) -> Any:
    """What names a site's service in the report (`www.facebook.com (all of Facebook)`): the
    current rules' catalogue; None (sites as recorded) without rules."""
    from socialguard.overrides import Limits

    return Limits.from_policy(policy).describe if policy is not None else None


def _summary_json(s: Any) -> dict[str, Any]:
    return {
        "zone": s.zone,
        "since": s.since,
        "until": s.until,
        "decisions": s.decisions,
        "allowed": s.allowed,
        "blocked": s.blocked,
        "blocked_by_day": dict(sorted(s.blocked_by_day.items())),
        "blocked_by_hour": {f"{h:02d}": n for h, n in sorted(s.blocked_by_hour.items())},
        "blocked_by_group": dict(s.blocked_by_group.most_common()),  # in each group listed
        "blocked_by_group_once": {  # each once, under the most specific group(s)
            label: {"requests": n, "part_of": s.part_of(label)}
            for label, n in s.blocked_by_own_group.most_common()
        },
        "blocked_by_person": dict(s.blocked_by_person.most_common()),
        "top_blocked_destinations": dict(s.blocked_destinations.most_common(15)),
        "blocked_visits": s.blocked_visits,
        "blocked_visits_by_service": {
            k: {"visits": v, "requests": n}
            for k, v, n in s.services_by_visits(len(s.blocked_requests_by_service))
        },
        "blocked_visits_by_person": dict(s.blocked_visits_by_person.most_common()),
        "by_basis": dict(s.by_basis),
        "grants_used": dict(s.grants_used),
        "emergencies_used": dict(s.emergencies_used),
        "emergencies": [vars_of(e) for e in s.emergencies],
        "awaiting_review": [{"id": k, **vars_of(e)} for k, e in s.awaiting_review],
        "access_requests": [
            {"id": k, **vars_of(e), "answer": s.request_answers.get(k, "pending")}
            for k, e in s.access_requests.items()
        ],
    }


def vars_of(e: Any) -> dict[str, Any]:
    keys = ("when", "action", "by", "target", "reason", "details", "opens")
    return {k: getattr(e, k) for k in keys}


# -- verify ---------------------------------------------------------------------------------------


@app.command("verify")
def verify(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    directory: Annotated[
        Path | None, typer.Argument(help="Log directory [default: --log-dir, else <state>/log].")
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            "--checkpoints",
            help="Checkpoint file or directory [default: $SOCIALGUARD_CHECKPOINT_DIR, else "
            "<state>/checkpoints, if present].",
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Public key (PEM) to check checkpoint signatures.")
    ] = None,
    anchor: Annotated[
        Path | None,
        typer.Option(
            "--anchor",
            help="The off-box copy of the checkpoints: the syslog collector's file (or a "
            "directory of checkpoint files); records matching it count as anchored.",
        ),
    ] = None,
    as_json: JsonOption = False,
    log_dir: LogDirOption = None,
    state: StateOption = None,
) -> None:
    """Check that the log is intact (every chain, file and checkpoint) and say what that proves.

    Exit codes: 0 anchored (intact, and matching checkpoints signed with the --key given, or the
    collector's copy given with --anchor);
    5 self-consistent only (intact, but checked against nothing held off this machine);
    4 incomplete (no tampering in what is here, but records the checkpoints know of are elsewhere:
    a new chain, a restored or moved directory); 1 broken, naming the first broken place
    (file:line and what is wrong); 2 bad input.

    Example: socialguard audit verify var/log --checkpoints /mnt/offbox/checkpoints --key audit.pub
    """
    from socialguard.audit.checkpoints import load_public_key
    from socialguard.audit.verify import VERDICT_LINES, Verdict, verdict, verify_log
    from socialguard.audit.verify import summarise as describe

    with domain_errors():
        where = directory or _log_dir(log_dir, state)
        if checkpoints is None:
            default = paths.checkpoint_dir(None, state)
            checkpoints = default if default.is_dir() else None
        elif not checkpoints.exists():
            raise ConfigError(f"{checkpoints}: no such checkpoint file or directory")
        public = load_public_key(key) if key is not None else None
        if public is not None and checkpoints is None:
            raise ConfigError("--key given but no checkpoints found (give --checkpoints)")
        if anchor is not None and not anchor.exists():
            raise ConfigError(f"--anchor {anchor}: no such file or directory")
        result = verify_log(where, checkpoints=checkpoints, public_key=public, anchor=anchor)
    found = verdict(result)
    if as_json:
        typer.echo(json.dumps({"verdict": found.value, **_verify_json(result)}, indent=2))
    else:
        for line in describe(result):
            typer.echo(line)
    if found is Verdict.BROKEN:
        for b in result.first_problems():
            typer.echo(f"BROKEN {b.node}: {b}", err=True)
    if not result.chains:
        typer.echo(f"{where}: no decision log files", err=True)
    if not as_json:
        typer.echo(VERDICT_LINES[found])
    code = VERIFY_EXIT[found]
    if code:
        raise typer.Exit(code)


VERIFY_EXIT = {"anchored": 0, "self-consistent": 5, "incomplete": 4, "broken": EXIT_FAIL}


def _verify_json(result: Any) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "complete": result.complete,
        "anchored": result.anchored,
        "chains": {
            node: {
                "chain": r.chain_id,
                "records": r.records,
                "files": r.files,
                "first_seq": r.first_seq,
                "last_seq": r.last_seq,
                "head": r.head,
                "checkpoints": r.checkpoints,
                "pruned_before": r.pruned_before,
                "notes": r.notes,
                "findings": r.findings,
                "anchored_seq": r.anchored_seq,
                "unsigned_before_key": r.unsigned_before_key,
                "problem": None
                if r.problem is None
                else {"where": r.problem.where, "message": r.problem.message},
            }
            for node, r in result.chains.items()
        },
        "problems": [{"where": b.where, "message": b.message} for b in result.problems],
        "notes": result.notes,
    }


# -- tail -----------------------------------------------------------------------------------------


@app.command("tail")
def tail(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    lines: Annotated[
        int, typer.Option("-n", "--lines", help="How many recent records to show.")
    ] = 20,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new records.")
    ] = False,
    as_json: JsonOption = False,
    tz: TzOption = None,
    rules: RulesOption = None,
    log_dir: LogDirOption = None,
    state: StateOption = None,
) -> None:
    """Show the latest decisions, readable; with -f, keep following the log (Ctrl-C stops).

    Example: socialguard audit tail -f --log-dir var/log
    """
    from socialguard.audit.tail import follow_records, last_records

    with domain_errors():
        if lines < 0:
            raise ConfigError("--lines must be 0 or more")
        zone = _zone(tz, rules)
        where = _log_dir(log_dir, state)
        if not where.is_dir():
            raise AuditError(f"{where}: no such log directory")

        def show(r: dict[str, Any]) -> None:
            if as_json:
                typer.echo(json.dumps(r))  # ASCII: no raw bidi or C1 character on a terminal
            else:
                typer.echo("  ".join(v for v in _row(r, zone) if v))

        recent, offsets = last_records(where, lines)
        for r in recent:
            show(r)
        if follow:
            try:
                for r in follow_records(where, offsets):
                    show(r)
            except KeyboardInterrupt:
                return


# -- prune ----------------------------------------------------------------------------------------


@app.command("prune")
def prune(  # noqa: PLR0917 - typer maps each CLI option to one parameter
    before: Annotated[
        str, typer.Option("--before", help="Remove files whose records all precede this date.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
    tz: TzOption = None,
    rules: RulesOption = None,
    log_dir: LogDirOption = None,
    state: StateOption = None,
) -> None:
    """Remove old log files (retention) and leave an anchor so the rest still verifies.

    Only whole, closed files at the start of each chain are removed, never the newest.

    Example: socialguard audit prune --before 2025-07-01 --log-dir var/log
    """
    from socialguard.audit.prune import prune as run_prune

    with domain_errors():
        try:
            cut = date.fromisoformat(before)
        except ValueError as e:
            raise ConfigError(f"--before {before!r}: expected a date such as 2025-07-01") from e
        zone = _zone(tz, rules)
        result = run_prune(
            _log_dir(log_dir, state), cut, zone, now=datetime.now(UTC), dry_run=dry_run
        )
    verb = "would remove" if dry_run else "removed"
    if not result.removed:
        typer.echo(f"nothing to prune before {cut}")
    for node, removed in result.removed.items():
        typer.echo(
            f"{node}: {verb} {len(removed)} files; the chain now starts at seq "
            f"{result.kept_from[node]}"
        )
        for p in removed:
            typer.echo(f"  {p}")


# -- keygen ---------------------------------------------------------------------------------------


@app.command("keygen")
def keygen(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Private key file [default: $SOCIALGUARD_AUDIT_KEY, else "
            "<state>/audit-signing.key, where `socialguard run` looks]; the public key goes "
            "beside it with .pub.",
        ),
    ] = None,
    state: StateOption = None,
) -> None:
    """Make the Ed25519 key pair that signs checkpoints (private key mode 0600).

    Keep the private key on the proxy; give the public key to the auditors, off the box.

    Example: socialguard audit keygen --state /var/lib/socialguard
    """
    from socialguard.audit.checkpoints import generate_keypair

    with domain_errors():
        private = paths.audit_key(out, state)
        public = paths.public_key_of(private)
        kid = generate_keypair(private, public)
    typer.echo(f"private key: {private} (mode 0600; keep on the proxy)")
    typer.echo(f"public key:  {public} (give to auditors: socialguard audit verify --key {public})")
    typer.echo(f"key id:      {kid}")
