"""`socialguard rules` commands: check, test, apply, import, fingerprint."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from socialguard import paths
from socialguard.cli.common import EXIT_FAIL, EXIT_OK, JsonOption, StateOption, fail
from socialguard.cli.helpfmt import HelpGroup

from . import fingerprint_cmd, import_cmd

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    help="Validate and test the rules file; import domain lists.",
    no_args_is_help=True,
)
app.command("import")(import_cmd.import_list)
app.command("fingerprint")(fingerprint_cmd.fingerprint)

PathArgument = Annotated[
    Path | None,
    typer.Argument(
        metavar="[PATH]",
        help="Rules file (env SOCIALGUARD_RULES; default rules/policy.yaml).",
        show_default=False,
    ),
]


def _load(path: Path | None, *, as_json: bool = False):  # type: ignore[no-untyped-def]
    """Load the rules or exit: 2 when the file is missing, 1 with every problem when it is
    invalid (as JSON on stdout too, with `as_json`)."""
    from socialguard.errors import PolicyError
    from socialguard.policy import load_policy

    rules = paths.rules_path(path)
    if not rules.is_file():
        raise fail(f"{rules}: rules file not found")
    try:
        return load_policy(rules)
    except PolicyError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        n = len(e.problems)
        typer.echo(f"{rules}: invalid ({n} problem{'s' if n != 1 else ''})", err=True)
        if as_json:
            _print_json(
                {"file": str(rules), "valid": False, "problems": list(map(str, e.problems))}
            )
        raise typer.Exit(EXIT_FAIL) from e


def _print_json(data: dict[str, Any]) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.command("check")
def check(path: PathArgument = None, as_json: JsonOption = False) -> None:
    """Validate the rules file, print a summary, and run its own tests.

    Exit 0 when the file is valid and its tests pass (warnings, such as a rule that can never
    match, are printed but never fail); 1 when it is invalid (every error, file:line: field) or a
    test fails; 2 when the file is missing. With --json the summary (or the problems) is one
    JSON object on stdout, for scripts; the exit codes are the same.

    Example:

        socialguard rules check rules/policy.yaml
    """
    from socialguard.policy import run_policy_tests

    policy = _load(path, as_json=as_json)
    rules = paths.rules_path(path)
    if as_json:
        results = run_policy_tests(policy)
        _print_json(_check_summary(rules, policy, results))
        raise typer.Exit(EXIT_FAIL if any(not r.passed for r in results) else EXIT_OK)
    typer.echo(f"{rules}: valid (version {policy.version})")
    typer.echo(f"district: {policy.district.name} ({policy.district.timezone.key})")
    typer.echo(f"groups ({len(policy.group_names)}): {', '.join(sorted(policy.group_names))}")
    if len(policy.devices):
        typer.echo(f"devices: {len(policy.devices)} in the inventory")
    typer.echo(f"schedules ({len(policy.schedules)}): {', '.join(sorted(policy.schedules))}")
    typer.echo(f"categories ({len(policy.categories)}):")
    for cat in policy.categories.values():
        nets = f", {cat.network_count} networks" if cat.network_count else ""
        typer.echo(f"  {cat.name}: {cat.domain_count} domains{nets}")
    if policy.services:
        domains = sum(len(s.domains) for s in policy.services.services.values())
        typer.echo(f"services: {len(policy.services)} ({domains} domains)")
    typer.echo(f"rules ({len(policy.rules)}, first match wins; default {policy.default.value}):")
    for rule in policy.rules:
        typer.echo(f"  {rule.index + 1}. {rule.id}: {rule.action.value}{_rule_summary(rule)}")
    for rule_id in policy.disabled_rules:
        typer.echo(f"  -  {rule_id}: switched off (enabled: false)")
    for warning in policy.warnings:
        typer.echo(f"warning: {warning}", err=True)
    results = run_policy_tests(policy)
    failed = [r for r in results if not r.passed]
    for r in failed:
        typer.echo(r.describe(), err=True)
    typer.echo(f"tests: {len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        typer.echo(
            "warning: no `tests:`: a file cut short cannot be told from a whole one without them "
            "(end the file with them; `rules apply` refuses a version without)",
            err=True,
        )
    raise typer.Exit(EXIT_FAIL if failed else EXIT_OK)


def _check_summary(rules: Path, policy: Any, results: list[Any]) -> dict[str, Any]:
    """What `rules check` prints, as one JSON object."""
    failed = [r.describe() for r in results if not r.passed]
    return {
        "file": str(rules),
        "valid": True,
        "version": policy.version,
        "district": policy.district.name,
        "timezone": policy.district.timezone.key,
        "groups": sorted(policy.group_names),
        "devices": len(policy.devices),
        "schedules": sorted(policy.schedules),
        "categories": {
            cat.name: {"domains": cat.domain_count, "networks": cat.network_count}
            for cat in policy.categories.values()
        },
        "services": len(policy.services) if policy.services else 0,
        "rules": [{"id": rule.id, "action": rule.action.value} for rule in policy.rules],
        "switched_off": list(policy.disabled_rules),
        "default": policy.default.value,
        "warnings": [str(w) for w in policy.warnings],
        "tests": {"passed": len(results) - len(failed), "failed": len(failed), "failures": failed},
    }


def _rule_summary(rule) -> str:  # type: ignore[no-untyped-def]
    who = (
        "everyone"
        if rule.everyone
        else ", ".join(
            sorted(rule.groups)
            + [f"user:{u}" for u in sorted(rule.users)]
            + [f"device:{d}" for d in sorted(rule.devices)]
        )
    )
    what = []
    what += [t for t in sorted(rule.tags) if t.startswith("category:")]
    if any(t.startswith("rule:") for t in rule.tags):
        what.append("listed domains/networks")
    what += [str(u) for u in rule.urls]
    if rule.methods is not None:
        what.append("methods " + ",".join(sorted(rule.methods)))
    if rule.uploads is not None:
        what.append("uploads" if rule.uploads else "no uploads")
    if rule.doh:
        what.append("DNS-over-HTTPS requests")
    parts = [f" who {who}", f" what {'; '.join(what) or 'anything'}"]
    parts.append(f" when {rule.when}" if rule.when else " always")
    if rule.bypass:
        parts.append(" bypass " + ",".join(sorted(b.value for b in rule.bypass)))
    return " —" + ";".join(parts)


@app.command("test")
def test(
    path: PathArgument = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print passing tests too.")
    ] = False,
) -> None:
    """Run the rules file's own `tests:` (expected decisions) against its rules.

    Each failure is printed with the decision's explanation (basis, rule, reason, groups, trace).
    Exit 0 when every test passes, 1 when one fails or the file is invalid, 2 when it is missing.

    Example:

        socialguard rules test rules/policy.yaml
    """
    from socialguard.policy import run_policy_tests

    policy = _load(path)
    results = run_policy_tests(policy)
    failed = [r for r in results if not r.passed]
    for r in results:
        if not r.passed:
            typer.echo(r.describe(), err=True)
        elif verbose:
            typer.echo(r.describe())
    if not results:
        typer.echo("no tests: add a `tests:` list to the rules file")
    typer.echo(f"tests: {len(results) - len(failed)} passed, {len(failed)} failed")
    raise typer.Exit(EXIT_FAIL if failed else EXIT_OK)


@app.command("apply")
def apply(
    path: PathArgument = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Publish this file as the rules file: validated, then swapped in atomically.",
        ),
    ] = None,
    state: StateOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Publish a version that loses rules without asking.")
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="A name for the publisher, recorded beside the real OS user (the sudo user "
            "under sudo), never instead of it.",
        ),
    ] = None,
) -> None:
    """Publish a rules version: validate it, run its tests, show what changes, approve it.

    The running proxy takes a new version of the rules by itself only when it loses nothing (no
    rule removed or switched off, no test gone, no category smaller): a truncated or half-written
    file looks exactly like a version that loses rules. A version that does lose something is held
    until published here. The change is shown against the version the proxy records in force in
    the state directory (rules added, removed, switched off, tests, categories); one that loses
    something asks for confirmation (or --yes). With --from, that file is validated beside the
    rules file and renamed over it in one step, so the proxy never sees it half-written.

    Exit 0 published, 1 invalid, no tests, failing tests or not confirmed, 2 file missing or
    state not writable.

    Example:

        socialguard rules apply rules/policy.yaml --state /var/lib/socialguard
    """
    from datetime import UTC, datetime

    from socialguard.cli.actor import os_admin
    from socialguard.policy.publish import (
        approve,
        compare,
        content_digest,
        read_in_force,
        summarize,
    )

    rules = paths.rules_path(path)
    state_dir = paths.state_dir(state)
    staged = _stage(source, rules) if source is not None else None
    try:
        policy = _load(staged or rules)
        failed = _failed_tests(policy)
        if failed:
            raise typer.Exit(EXIT_FAIL)
        if not policy.tests:
            typer.echo(
                "error: no `tests:` in the rules file: a version without its tests cannot be told "
                "from one cut short; end the file with them",
                err=True,
            )
            raise typer.Exit(EXIT_FAIL)
        summary = summarize(policy, rules, content_digest(list(policy.source_files)))
        baseline = read_in_force(state_dir)
        if baseline is None:
            typer.echo(f"no rules version recorded in force in {state_dir}: nothing to compare")
            lost: list[str] = []
        else:
            change = compare(baseline, summary)
            lines = change.describe()
            typer.echo(f"against the version in force ({baseline.version}):")
            for line in lines or ["  no rule, test or category changes"]:
                typer.echo(line)
            lost = change.losses()
        if lost and not yes:
            typer.echo("this version " + "; ".join(lost) + ".")
            if not typer.confirm("publish it?", default=False):
                typer.echo("not published", err=True)
                raise typer.Exit(EXIT_FAIL)
        try:
            approve(state_dir, summary, _publisher(by, os_admin().user), datetime.now(UTC))
            if staged is not None:
                os.replace(staged, rules)
                staged = None
        except OSError as e:
            raise fail(f"{state_dir}: cannot record the approval: {e.strerror or e}") from e
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    typer.echo(f"published {rules} (version {summary.version}); running proxies take it within 2 s")


def _publisher(by: str | None, os_user: str) -> str:
    """Who published: the real OS user (the sudo user under sudo); a --by naming someone else is
    kept beside it, never instead of it."""
    claim = (by or "").strip()
    return os_user if not claim or claim == os_user else f"{claim} (os user {os_user})"


def _stage(source: Path, rules: Path) -> Path:
    """A copy of `source` beside the rules file (so its includes resolve the same), fsynced."""
    try:
        data = source.read_bytes()
    except OSError as e:
        raise fail(f"{source}: cannot read: {e.strerror or e}") from e
    fd, tmp = tempfile.mkstemp(prefix=f".{rules.name}.", suffix=".yaml", dir=rules.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    return Path(tmp)


def _failed_tests(policy) -> list[Any]:  # type: ignore[no-untyped-def]
    from socialguard.policy import run_policy_tests

    results = run_policy_tests(policy)
    failed = [r for r in results if not r.passed]
    for r in failed:
        typer.echo(r.describe(), err=True)
    typer.echo(f"tests: {len(results) - len(failed)} passed, {len(failed)} failed")
    return failed
