"""`socialguard run` with a directory that cannot be used: refused at start, the cause (naming the
URL or the field) on stderr, exit 2 as any other bad configuration — not a proxy that starts and
then fails every sign-in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from proxy_harness import load_proxy_harness  # tests/proxy_harness.py
from slapd_district import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd

pytestmark = pytest.mark.e2e

harness = load_proxy_harness()


def run(
    tmp_path: Path, url: str, password: str = SERVICE_PASSWORD
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bind.pw").write_text(password + "\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        harness.TEST_RULES.split("tests:")[0]
        + f"""\
identity:
  directory:
    url: {url}
    insecure_plaintext_on_loopback: true
    bind_dn: {SERVICE_DN}
    bind_password_file: bind.pw
    user_base: {PEOPLE}
    group_base: {GROUPS}
    timeout: 2
"""
    )
    cmd = [
        sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
        "--certs", str(tmp_path / "certs"), "--state", str(tmp_path / "state"),
        "--listen", "127.0.0.1:0", "--node", "start",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False, env=env)


def test_an_unreachable_directory_refuses_the_start_naming_the_url(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"ldap://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens
    res = run(tmp_path, url)
    assert res.returncode == 2, res.stderr
    assert f"error: identity: directory: url: {url} cannot be reached" in res.stderr
    assert "socialguard could not start" in res.stderr


def test_a_service_account_the_directory_refuses_is_a_start_error_naming_bind_dn(
    slapd: Slapd, tmp_path: Path
) -> None:
    res = run(tmp_path, slapd.ldap_url, password="not-the-password")
    assert res.returncode == 2, res.stderr
    assert f"error: identity: directory: bind_dn: '{SERVICE_DN}' cannot bind" in res.stderr
