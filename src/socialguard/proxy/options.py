"""The addon's options, parsed by pure functions that raise ValueError.

mitmproxy rolls an option change back only when `configure()` raises `OptionsError`, so the addon's
`configure()` does nothing but call `parse_settings` and translate its ValueError; everything that
can be wrong with a value is found here, where it is easy to test.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from socialguard import paths

from .budget import DEFAULT_UPLOAD_MEMORY, parse_upload_memory
from .timeouts import DEFAULT_CONNECT_TIMEOUT_S, parse_connect_timeout

_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_RELOAD_S = 0.05
MAX_RELOAD_S = 10.0


class NeighbourMode(StrEnum):
    """When to read the host's neighbour table for MAC addresses."""

    AUTO = "auto"  # on in transparent and wireguard mode (the proxy is the clients' gateway)
    ON = "on"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Settings:
    rules: Path
    state: Path
    log_dir: Path
    checkpoint_dir: Path
    audit_key: Path
    node: str
    neighbours: NeighbourMode
    reload_interval_s: float
    admin: tuple[str, int] | None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    upload_memory: int = 64 * 1024 * 1024
    # the syslog collector checkpoints are shipped to: (host, port), TLS, CA file for TLS
    audit_syslog: tuple[str, int] | None = None
    audit_syslog_tls: bool = False
    audit_syslog_ca: Path | None = None
    audit_syslog_records: bool = False  # every record too, not only the checkpoints


def parse_node(raw: str) -> str:
    """The node id names this proxy's decision-log chain; default: the host name."""
    node = raw.strip() or socket.gethostname().split(".")[0] or "node"
    if not _NODE.match(node):
        raise ValueError(
            f"socialguard_node: {raw!r} is not a valid node id "
            "(letters, digits, '.', '_' or '-', at most 64, starting with a letter or digit)"
        )
    return node


def parse_neighbours(raw: str) -> NeighbourMode:
    try:
        return NeighbourMode(raw.strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in NeighbourMode)
        raise ValueError(f"socialguard_neighbours: {raw!r} is not one of {choices}") from None


def parse_reload_interval(raw: float) -> float:
    if not MIN_RELOAD_S <= raw <= MAX_RELOAD_S:
        raise ValueError(
            f"socialguard_reload_interval: {raw} s is outside {MIN_RELOAD_S}..{MAX_RELOAD_S} s"
        )
    return raw


def parse_hostport(raw: str, *, what: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT`; port 0 means any free port."""
    text = raw.strip()
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if not m:
        raise ValueError(f"{what}: {raw!r} is not HOST:PORT (IPv6 as [ADDR]:PORT)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{what}: {host!r} is not an IPv6 address") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is outside 0..65535")
    if host == "*":  # every address of both families (mitmproxy's empty listen_host): IPv4 + IPv6
        return "", port
    return host, port


def parse_admin(raw: str) -> tuple[str, int] | None:
    """The admin endpoint (/healthz, /metrics): empty for none; loopback only, not for clients."""
    if not raw.strip():
        return None
    host, port = parse_hostport(raw, what="socialguard_admin")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(
            f"socialguard_admin: {host!r} is not a loopback address; the admin endpoint "
            "must not be reachable by the district's clients"
        )
    return host, port


ENV_AUDIT_SYSLOG = "SOCIALGUARD_AUDIT_SYSLOG"


def parse_audit_syslog(raw: str, ca: str) -> dict[str, Any]:
    """`HOST:PORT` (plain TCP) or `tls://HOST:PORT` of the collector checkpoints are shipped to;
    empty: $SOCIALGUARD_AUDIT_SYSLOG, else none. `ca`: the CA file verifying a TLS collector
    (default: the system's)."""
    import os

    from socialguard.audit.shipping import parse_address

    text = raw.strip() or os.environ.get(ENV_AUDIT_SYSLOG, "").strip()
    if not text:
        return {}
    tls = text.startswith("tls://")
    try:
        address = parse_address(text.removeprefix("tls://").removeprefix("tcp://"))
    except ValueError as e:
        raise ValueError(f"socialguard_audit_syslog: {e}") from None
    ca_path = Path(ca) if ca.strip() else None
    if ca_path is not None and not ca_path.is_file():
        raise ValueError(f"socialguard_audit_syslog_ca: {ca_path} is not a file")
    return {"audit_syslog": address, "audit_syslog_tls": tls, "audit_syslog_ca": ca_path}


def parse_settings(
    *,
    rules: str,
    state: str,
    log_dir: str,
    node: str,
    neighbours: str,
    reload_interval: float,
    admin: str,
    checkpoint_dir: str = "",
    audit_key: str = "",
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    upload_memory: str = DEFAULT_UPLOAD_MEMORY,
    audit_syslog: str = "",
    audit_syslog_ca: str = "",
    audit_syslog_records: bool = False,
) -> Settings:
    """All options at once; empty paths fall back to the env var, then the shipped default."""
    rules_path = paths.rules_path(Path(rules) if rules.strip() else None)
    state_path = paths.state_dir(Path(state) if state.strip() else None)
    log_path = paths.log_dir(Path(log_dir) if log_dir.strip() else None, state_path)
    if not rules_path.is_file():
        raise ValueError(f"socialguard_rules: {rules_path} does not exist or is not a file")
    cp_path = paths.checkpoint_dir(
        Path(checkpoint_dir) if checkpoint_dir.strip() else None, state_path
    )
    key_path = paths.audit_key(Path(audit_key) if audit_key.strip() else None, state_path)
    if key_path.exists() and not key_path.is_file():
        raise ValueError(f"socialguard_audit_key: {key_path} exists and is not a file")
    for what, p in (
        ("socialguard_state", state_path),
        ("socialguard_log_dir", log_path),
        ("socialguard_checkpoint_dir", cp_path),
    ):
        if p.exists() and not p.is_dir():
            raise ValueError(f"{what}: {p} exists and is not a directory")
    syslog = parse_audit_syslog(audit_syslog, audit_syslog_ca)
    if audit_syslog_records and not syslog:
        raise ValueError(
            "socialguard_audit_syslog_records: no collector to ship the records to "
            f"(set socialguard_audit_syslog or ${ENV_AUDIT_SYSLOG})"
        )
    return Settings(
        rules=rules_path,
        state=state_path,
        log_dir=log_path,
        checkpoint_dir=cp_path,
        audit_key=key_path,
        **syslog,
        audit_syslog_records=audit_syslog_records,
        node=parse_node(node),
        neighbours=parse_neighbours(neighbours),
        reload_interval_s=parse_reload_interval(reload_interval),
        admin=parse_admin(admin),
        connect_timeout_s=parse_connect_timeout(connect_timeout),
        upload_memory=parse_upload_memory(upload_memory),
    )
