"""`socialguard ca`: create, show and export the interception CA."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from socialguard import paths
from socialguard.cli.common import JsonOption, handles_errors
from socialguard.cli.helpfmt import HelpGroup

app = typer.Typer(
    cls=HelpGroup,
    rich_markup_mode=None,
    help="The interception CA: create it, show it, export it for district devices.",
    no_args_is_help=True,
)

CertsOption = Annotated[
    Path | None,
    typer.Option("--certs", help="CA directory (env SOCIALGUARD_CERTS; default certs/)."),
]


@app.command("init")
@handles_errors
def init(
    certs: CertsOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing CA (its files are kept in certs/replaced-<time>/).",
        ),
    ] = False,
    organization: Annotated[
        str | None,
        typer.Option(
            "--organization",
            help="The certificate's O= (e.g. the district); default: the replaced CA's, "
            "else socialguard.",
        ),
    ] = None,
    common_name: Annotated[
        str | None,
        typer.Option(
            "--common-name",
            help="The certificate's CN=, shown on devices; default: the replaced CA's, "
            "else 'socialguard interception CA'.",
        ),
    ] = None,
) -> None:
    """Generate the interception CA in mitmproxy's layout (key readable by its owner only).

    Refuses to replace an existing CA unless --force is given (exit 2).

    Example:

        socialguard ca init --certs /etc/socialguard/certs --organization "Springfield USD"
    """
    from socialguard.deploy.ca import init_ca

    directory = paths.certs_dir(certs)
    info, backup = init_ca(
        directory, force=force, organization=organization, common_name=common_name
    )
    if backup:
        typer.echo(f"previous CA moved to {backup}")
    typer.echo(f"created CA in {directory}")
    typer.echo(f"  subject  {info.subject}")
    typer.echo(f"  valid    {info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d}")
    typer.echo(f"  sha256   {info.sha256}")
    typer.echo("next: distribute it to devices (`socialguard ca export --help`)")


@app.command("show")
@handles_errors
def show(certs: CertsOption = None, as_json: JsonOption = False) -> None:
    """Show the CA certificate: subject, validity and SHA-256 fingerprint.

    Compare the fingerprint with the one a device shows to check it trusts the right CA.

    Example:

        socialguard ca show --certs /etc/socialguard/certs
    """
    from socialguard.deploy.ca import read_ca

    info = read_ca(paths.certs_dir(certs))
    expired = info.expired(datetime.now(UTC))
    fields = {
        "path": str(info.path),
        "subject": info.subject,
        "issuer": info.issuer,
        "serial": info.serial,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "expired": expired,
        "key": info.key,
        "sha256": info.sha256,
    }
    if as_json:
        typer.echo(json.dumps(fields, indent=2))
        return
    for name, value in fields.items():
        typer.echo(f"{name:<11} {value}")


@app.command("export")
@handles_errors
def export(
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="pem (Linux, Firefox, ChromeOS), der (Windows GPO), p12, mobileconfig (Apple).",
        ),
    ] = "pem",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of standard output.")
    ] = None,
    certs: CertsOption = None,
) -> None:
    """Export the CA certificate (never its key) for distribution to devices.

    Binary formats (der, p12) need --out when standard output is a terminal.

    Example:

        socialguard ca export --format mobileconfig --out socialguard.mobileconfig
    """
    from socialguard.deploy.ca import ExportFormat, export_ca
    from socialguard.errors import ConfigError

    try:
        chosen = ExportFormat(fmt)
    except ValueError as e:
        allowed = ", ".join(f.value for f in ExportFormat)
        raise ConfigError(f"--format: unknown format {fmt!r} (choose one of {allowed})") from e
    data = export_ca(paths.certs_dir(certs), chosen)
    if out is not None:
        try:
            out.write_bytes(data)
        except OSError as e:
            raise ConfigError(f"--out {out}: cannot write: {e.strerror or e}") from e
        typer.echo(f"wrote {out} ({chosen.value}, {len(data)} bytes)", err=True)
        return
    if chosen in (ExportFormat.DER, ExportFormat.P12) and sys.stdout.isatty():
        raise ConfigError(f"--format {chosen.value} is binary: give --out FILE")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
