"""The identity service: sources started from the rules' section, and started again when asked."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from socialguard.engine.identity import IdentitySpec, RadiusSpec
from socialguard.identity import IdentityService


def test_a_radius_source_that_could_not_start_starts_when_configured_again(
    tmp_path: Path,
) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        spec = IdentitySpec(radius=RadiusSpec(listen=f"127.0.0.1:{port}", secret_file="secret"))
        svc = IdentityService()
        with pytest.raises(OSError):
            svc.configure(spec, tmp_path, tmp_path / "state")
        assert svc.radius is None
    try:
        svc.configure(spec, tmp_path, tmp_path / "state")  # the port is free now
        assert svc.radius is not None
        assert svc.radius.port == port
    finally:
        svc.stop()


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("\n")
    spec = IdentitySpec(radius=RadiusSpec(listen="127.0.0.1:1813", secret_file="secret"))
    svc = IdentityService()
    with pytest.raises(ValueError, match="is empty"):
        svc.configure(spec, tmp_path, tmp_path / "state")
    svc.stop()
