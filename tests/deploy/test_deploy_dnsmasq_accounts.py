"""Steered mode keeps the `accounts:` sign-in restriction: the sign-in hosts whose requests get
the restriction headers must go through the proxy, so their addresses are steered too."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from socialguard.cli import app
from socialguard.deploy.dnsmasq import steered_domains
from socialguard.policy import load_policy

REPO = Path(__file__).resolve().parents[2]


def _nftset_domains(rules: Path) -> set[str]:
    r = CliRunner().invoke(app, ["deploy", "dnsmasq", "--rules", str(rules)])
    assert r.exit_code == 0, r.output
    out: set[str] = set()
    for names in re.findall(r"^nftset=/(.+)/[^/]+$", r.stdout, re.MULTILINE):
        out.update(names.split("/"))
    return out


def test_the_sign_in_hosts_are_steered_when_accounts_restricts_them() -> None:
    steered = _nftset_domains(REPO / "rules" / "policy.yaml")
    assert {"google.com", "login.microsoftonline.com", "login.microsoft.com",
            "login.windows.net", "login.live.com"} <= steered  # fmt: skip


def test_without_accounts_the_sign_in_hosts_are_not_steered() -> None:
    steered = _nftset_domains(REPO / "rules" / "demo.yaml")  # the demo has no accounts:
    assert "google.com" not in steered and "login.microsoftonline.com" not in steered


def test_the_steered_list_says_why_the_sign_in_hosts_are_there() -> None:
    d = steered_domains(load_policy(REPO / "rules" / "policy.yaml"))
    assert any("accounts:" in n and "google.com" in n for n in d.notes), d.notes
