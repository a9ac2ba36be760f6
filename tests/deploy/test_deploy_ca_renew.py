"""`ca init --force` renews the CA under the district's name, not socialguard's default."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from socialguard.cli import app


def _names(certs: Path) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificate((certs / "mitmproxy-ca-cert.pem").read_bytes())
    org = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    return str(org), str(cn)


def _init(certs: Path, *args: str) -> str:
    r = CliRunner().invoke(app, ["ca", "init", "--certs", str(certs), *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_force_keeps_the_replaced_cas_names(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    _init(certs, "--organization", "Springfield USD", "--common-name", "Springfield filter")
    out = _init(certs, "--force")
    assert _names(certs) == ("Springfield USD", "Springfield filter")
    assert "O=Springfield USD" in out


def test_force_with_a_name_given_uses_it(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    _init(certs, "--organization", "Springfield USD")
    _init(certs, "--force", "--organization", "Shelbyville USD")
    assert _names(certs) == ("Shelbyville USD", "socialguard interception CA")


def test_a_first_ca_gets_the_defaults(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    _init(certs)
    assert _names(certs) == ("socialguard", "socialguard interception CA")
