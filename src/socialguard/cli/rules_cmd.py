"""`socialguard rules` commands: check, test, import, fingerprint."""

from __future__ import annotations

import typer

from . import fingerprint_cmd, import_cmd

app = typer.Typer(help="Validate and test the rules file; import domain lists.", no_args_is_help=True)
app.command("import")(import_cmd.import_list)
app.command("fingerprint")(fingerprint_cmd.fingerprint)
