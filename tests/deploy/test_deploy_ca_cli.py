"""`socialguard ca init|show|export` through the real command line.

Most tests invoke the CLI in-process (typer's runner: the same app, arguments and exit codes); a
fresh interpreter per command costs seconds on a loaded machine. One test runs the installed
command as a separate process, to check exit codes end to end.
"""

from __future__ import annotations

import os
import plistlib
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from mitmproxy.certs import CertStore
from typer.testing import CliRunner

from socialguard.cli import app

MITMPROXY_FILES = {
    "mitmproxy-ca.pem",
    "mitmproxy-ca.p12",
    "mitmproxy-ca-cert.pem",
    "mitmproxy-ca-cert.cer",
    "mitmproxy-ca-cert.p12",
    "mitmproxy-dhparam.pem",
}


@dataclass
class Ran:
    returncode: int
    stdout: bytes
    stderr: bytes


def sg(*args: str | Path, check_rc: int | None = 0) -> Ran:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    ran = Ran(result.exit_code, result.stdout_bytes, result.stderr_bytes)
    if check_rc is not None:
        assert ran.returncode == check_rc, (ran.stderr.decode(), result.exception)
    return ran


def sg_process(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *map(str, args)],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca") / "certs"
    sg("ca", "init", "--certs", d, "--organization", "Springfield USD")
    return d


def _fingerprint(pem_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def test_init_writes_mitmproxys_confdir_layout(ca_dir: Path) -> None:
    assert {p.name for p in ca_dir.iterdir()} == MITMPROXY_FILES


def test_keys_are_readable_by_their_owner_only(ca_dir: Path) -> None:
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600


def test_mitmproxy_loads_the_ca_and_signs_with_it(ca_dir: Path) -> None:
    store = CertStore.from_store(ca_dir, "mitmproxy", 2048)
    leaf = store.get_cert("example.test", [])
    assert leaf.cert.issuer == store.default_ca.subject
    assert store.default_ca.organization == "Springfield USD"


def test_init_refuses_to_overwrite_without_force(ca_dir: Path) -> None:
    before = (ca_dir / "mitmproxy-ca.pem").read_bytes()
    r = sg_process("ca", "init", "--certs", ca_dir)
    assert r.returncode == 2
    assert b"already holds a CA" in r.stderr
    assert b"--force" in r.stderr
    assert (ca_dir / "mitmproxy-ca.pem").read_bytes() == before


def test_force_replaces_and_keeps_the_old_ca(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    sg("ca", "init", "--certs", d)
    old_fp = _fingerprint(d / "mitmproxy-ca-cert.pem")
    r = sg("ca", "init", "--certs", d, "--force")
    assert b"previous CA moved to" in r.stdout
    new_fp = _fingerprint(d / "mitmproxy-ca-cert.pem")
    assert new_fp != old_fp
    (backup,) = d.glob("replaced-*")
    assert {p.name for p in backup.iterdir()} == MITMPROXY_FILES
    assert _fingerprint(backup / "mitmproxy-ca-cert.pem") == old_fp
    assert stat.S_IMODE((d / "mitmproxy-ca.pem").stat().st_mode) == 0o600


def test_show_prints_subject_validity_and_the_sha256_fingerprint(ca_dir: Path) -> None:
    out = sg("ca", "show", "--certs", ca_dir).stdout.decode()
    assert f"sha256      {_fingerprint(ca_dir / 'mitmproxy-ca-cert.pem')}" in out
    assert "O=Springfield USD" in out
    assert "not_after" in out
    assert "expired     False" in out


def test_show_json(ca_dir: Path) -> None:
    import json

    data = json.loads(sg("ca", "show", "--certs", ca_dir, "--json").stdout)
    assert data["sha256"] == _fingerprint(ca_dir / "mitmproxy-ca-cert.pem")
    assert data["key"] == "RSA 2048"


def test_show_without_a_ca_is_bad_input(tmp_path: Path) -> None:
    r = sg("ca", "show", "--certs", tmp_path, check_rc=2)
    assert b"no CA certificate here" in r.stderr
    assert b"socialguard ca init" in r.stderr


def test_export_pem_is_the_certificate_without_the_key(ca_dir: Path) -> None:
    out = sg("ca", "export", "--certs", ca_dir, "--format", "pem").stdout
    assert out == (ca_dir / "mitmproxy-ca-cert.pem").read_bytes()
    assert b"PRIVATE KEY" not in out


def test_export_der_to_a_file(ca_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "ca.der"
    sg("ca", "export", "--certs", ca_dir, "--format", "der", "--out", target)
    cert = x509.load_der_x509_certificate(target.read_bytes())
    pem = x509.load_pem_x509_certificate((ca_dir / "mitmproxy-ca-cert.pem").read_bytes())
    assert cert == pem


def test_export_p12_holds_no_key(ca_dir: Path) -> None:
    out = sg("ca", "export", "--certs", ca_dir, "--format", "p12").stdout
    key, cert, extra = pkcs12.load_key_and_certificates(out, None)
    assert key is None
    assert cert is None or cert.subject.rfc4514_string().endswith("socialguard interception CA")
    certs = [c for c in [cert, *extra] if c is not None]
    assert len(certs) == 1


def test_export_mobileconfig_is_a_root_payload_with_stable_uuids(ca_dir: Path) -> None:
    first = sg("ca", "export", "--certs", ca_dir, "--format", "mobileconfig").stdout
    second = sg("ca", "export", "--certs", ca_dir, "--format", "mobileconfig").stdout
    assert first == second
    profile = plistlib.loads(first)
    assert profile["PayloadType"] == "Configuration"
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.security.root"
    der = x509.load_der_x509_certificate(payload["PayloadContent"])
    assert der == x509.load_pem_x509_certificate((ca_dir / "mitmproxy-ca-cert.pem").read_bytes())


def test_export_unknown_format_is_bad_input(ca_dir: Path) -> None:
    r = sg("ca", "export", "--certs", ca_dir, "--format", "jks", check_rc=2)
    assert b"--format: unknown format 'jks'" in r.stderr


def test_two_replacements_in_the_same_second_keep_both_old_cas(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from socialguard.deploy.ca import init_ca

    d = tmp_path / "certs"
    now = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
    first, _ = init_ca(d, now=now)
    second, backup1 = init_ca(d, force=True, now=now)
    _, backup2 = init_ca(d, force=True, now=now)
    assert backup1 is not None and backup2 is not None and backup1 != backup2
    assert _fingerprint(backup1 / "mitmproxy-ca-cert.pem") == first.sha256
    assert _fingerprint(backup2 / "mitmproxy-ca-cert.pem") == second.sha256


def test_init_into_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = sg("ca", "init", "--certs", blocker / "certs", check_rc=2)
    assert r.stderr.startswith(f"error: {blocker / 'certs'}: cannot write the CA here".encode())


def test_export_to_an_unwritable_place_is_a_clear_error(ca_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "ca.pem"
    r = sg("ca", "export", "--certs", ca_dir, "--out", target, check_rc=2)
    assert r.stderr.startswith(f"error: --out {target}: cannot write".encode())
