"""Fixtures for the identity sources' tests: a real slapd with the district tree
(tests/slapd_district.py), started once per module and stopped at its end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from slapd_district import SLAPD, Slapd, start_slapd  # tests/slapd_district.py


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if SLAPD is None or shutil.which("ldapmodify") is None:
        pytest.skip("needs slapd (apt-get install slapd ldap-utils)")
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()
