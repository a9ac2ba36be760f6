"""socialguard.fsmode: modes at creation, tightening of what an older version left open."""

from __future__ import annotations

import stat
from pathlib import Path

from socialguard import fsmode


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_new_secret_file_is_the_services_alone(tmp_path: Path) -> None:
    assert _mode(fsmode.secret_file(tmp_path / "s.db")) == 0o600


def test_created_directories_get_their_mode_whatever_the_umask(tmp_path: Path) -> None:
    log = fsmode.audit_dir(tmp_path / "state" / "log")
    assert _mode(log) == 0o2750
    assert _mode(log.parent) == 0o750
    assert _mode(fsmode.private_dir(tmp_path / "certs")) == 0o700


def test_an_open_existing_directory_is_tightened_never_widened(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o777)
    d.chmod(0o777)
    assert _mode(fsmode.state_dir(d)) == 0o750
    d.chmod(0o700)
    assert _mode(fsmode.state_dir(d)) == 0o700


def test_a_sticky_shared_directory_is_never_changed(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    fsmode.state_dir(shared)
    assert _mode(shared) == 0o1777
