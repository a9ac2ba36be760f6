"""`socialguard rules` commands: check, test, import, fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from socialguard import paths
from socialguard.cli.common import EXIT_FAIL, EXIT_OK, fail
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


def _load(path: Path | None):  # type: ignore[no-untyped-def]
    """Load the rules or exit: 2 when the file is missing, 1 with every problem when it is
    invalid."""
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
        raise typer.Exit(EXIT_FAIL) from e


@app.command("check")
def check(path: PathArgument = None) -> None:
    """Validate the rules file, print a summary, and run its own tests.

    Exit 0 when the file is valid and its tests pass (warnings, such as a rule that can never
    match, are printed but never fail); 1 when it is invalid (every error, file:line: field) or a
    test fails; 2 when the file is missing.

    Example:

        socialguard rules check rules/policy.yaml
    """
    from socialguard.policy import run_policy_tests

    policy = _load(path)
    rules = paths.rules_path(path)
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
    raise typer.Exit(EXIT_FAIL if failed else EXIT_OK)


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
