"""The addon's option parsers: every bad value is a ValueError naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialguard.proxy.options import (
    NeighbourMode,
    parse_admin,
    parse_hostport,
    parse_neighbours,
    parse_node,
    parse_reload_interval,
    parse_settings,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:3128", ("::1", 3128)),
        ("proxy.example.org:80", ("proxy.example.org", 80)),
    ],
)
def test_hostport_accepts(raw: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(raw, what="--listen") == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("8080", "not HOST:PORT"),
        ("::1:8080", "not HOST:PORT"),
        ("127.0.0.1:70000", "outside 0..65535"),
        ("[zz::1]:80", "not an IPv6 address"),
    ],
)
def test_hostport_refuses(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hostport(raw, what="--listen")


def test_node_defaults_to_a_valid_host_name() -> None:
    assert parse_node("")


@pytest.mark.parametrize("raw", ["../etc", "a b", "-dash", "x" * 65])
def test_node_refuses_names_unfit_for_file_names(raw: str) -> None:
    with pytest.raises(ValueError, match="socialguard_node"):
        parse_node(raw)


def test_neighbours_modes() -> None:
    assert parse_neighbours("AUTO") is NeighbourMode.AUTO
    with pytest.raises(ValueError, match="socialguard_neighbours: 'sometimes' is not one of"):
        parse_neighbours("sometimes")


@pytest.mark.parametrize("raw", [0.0, 11.0, -1.0])
def test_reload_interval_bounds(raw: float) -> None:
    with pytest.raises(ValueError, match="socialguard_reload_interval"):
        parse_reload_interval(raw)


def test_admin_endpoint_must_be_loopback() -> None:
    assert parse_admin("") is None
    assert parse_admin("127.0.0.1:9090") == ("127.0.0.1", 9090)
    assert parse_admin("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="not a loopback address"):
        parse_admin("0.0.0.0:9090")


def _settings(tmp_path: Path, **over: str) -> dict[str, object]:
    base: dict[str, object] = {
        "rules": str(tmp_path / "rules.yaml"),
        "state": str(tmp_path / "state"),
        "log_dir": "",
        "node": "n1",
        "neighbours": "off",
        "reload_interval": 0.25,
        "admin": "",
    }
    base.update(over)
    return base


def test_settings_log_dir_defaults_under_state(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("x: 1\n")
    s = parse_settings(**_settings(tmp_path))  # type: ignore[arg-type]
    assert s.log_dir == tmp_path / "state" / "log"
    assert s.node == "n1"


def test_settings_put_checkpoints_and_the_signing_key_under_state_whatever_the_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule for every command (issue 18): not beside the log, whose parent a packaging may
    not let the service write (/var/log under ProtectSystem=strict)."""
    monkeypatch.delenv("SOCIALGUARD_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("SOCIALGUARD_AUDIT_KEY", raising=False)
    (tmp_path / "rules.yaml").write_text("x: 1\n")
    s = parse_settings(**_settings(tmp_path, log_dir=str(tmp_path / "var-log" / "sg")))  # type: ignore[arg-type]
    assert s.checkpoint_dir == tmp_path / "state" / "checkpoints"
    assert s.audit_key == tmp_path / "state" / "audit-signing.key"


def test_settings_take_checkpoints_and_key_from_options_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rules.yaml").write_text("x: 1\n")
    monkeypatch.setenv("SOCIALGUARD_CHECKPOINT_DIR", str(tmp_path / "env-cp"))
    monkeypatch.setenv("SOCIALGUARD_AUDIT_KEY", str(tmp_path / "env.key"))
    s = parse_settings(**_settings(tmp_path))  # type: ignore[arg-type]
    assert (s.checkpoint_dir, s.audit_key) == (tmp_path / "env-cp", tmp_path / "env.key")
    s = parse_settings(
        **_settings(tmp_path, checkpoint_dir=str(tmp_path / "cp"), audit_key=str(tmp_path / "k"))
    )  # type: ignore[arg-type]
    assert (s.checkpoint_dir, s.audit_key) == (tmp_path / "cp", tmp_path / "k")


def test_settings_refuse_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"socialguard_rules: .*rules.yaml does not exist"):
        parse_settings(**_settings(tmp_path))  # type: ignore[arg-type]


def test_settings_refuse_state_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("x: 1\n")
    (tmp_path / "state").write_text("")
    with pytest.raises(ValueError, match=r"socialguard_state: .* is not a directory"):
        parse_settings(**_settings(tmp_path))  # type: ignore[arg-type]


def test_shipping_every_record_needs_a_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rules.yaml").write_text("x: 1\n")
    monkeypatch.delenv("SOCIALGUARD_AUDIT_SYSLOG", raising=False)
    with pytest.raises(ValueError, match="socialguard_audit_syslog_records: no collector"):
        parse_settings(**_settings(tmp_path), audit_syslog_records=True)  # type: ignore[arg-type]
    s = parse_settings(
        **_settings(tmp_path, audit_syslog="127.0.0.1:6514"),  # type: ignore[arg-type]
        audit_syslog_records=True,
    )
    assert s.audit_syslog == ("127.0.0.1", 6514) and s.audit_syslog_records
