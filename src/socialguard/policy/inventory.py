"""The device inventory: which district device has which MAC/IP, and whom it belongs to.

Districts keep these in spreadsheets, so CSV is first-class (header row with `device`, `mac`, `ip`,
`owner`; only `device` and one of `mac`/`ip` are required); YAML (a list of mappings with the same
keys) works too. Every bad row is reported with its line.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socialguard.engine.compiled import normalise_mac
from socialguard.errors import Problem

__all__ = ["InventoryRow", "read_inventory"]

_COLUMNS = ("device", "mac", "ip", "owner")


@dataclass(frozen=True, slots=True)
class InventoryRow:
    line: int
    device: str
    mac: str | None
    ip: str | None
    owner: str | None


def read_inventory(path: Path, shown: str) -> tuple[list[InventoryRow], list[Problem]]:
    """Read one inventory file; `shown` is the name to use in messages."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        return [], [Problem(shown, None, "", f"cannot read device inventory: {e.strerror or e}")]
    if path.suffix.lower() in (".yaml", ".yml"):
        raw, problems = _yaml_rows(text, shown)
    else:
        raw, problems = _csv_rows(text, shown)
    rows: list[InventoryRow] = []
    for line, record in raw:
        row = _row(line, record, shown, problems)
        if row is not None:
            rows.append(row)
    return rows, problems


def _csv_rows(text: str, shown: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "device" not in header:
        return [], [
            Problem(shown, 1, "", "the header row must name a 'device' column (and mac, ip, owner)")
        ]
    unknown = [h for h in header if h and h not in _COLUMNS]
    problems = [
        Problem(shown, 1, "", f"unknown column {h!r} (known: device, mac, ip, owner)")
        for h in unknown
    ]
    reader.fieldnames = header
    out = []
    for record in reader:
        out.append(
            (reader.line_num, {k: (v or "").strip() or None for k, v in record.items() if k})
        )
    return out, problems


def _yaml_rows(text: str, shown: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    from .yamlpos import load_located

    located, problems = load_located(text, shown)
    if located is None:
        return [], problems
    if not isinstance(located.data, list):
        return [], [Problem(shown, 1, "", "expected a list of {device, mac, ip, owner}")]
    out = []
    for i, record in enumerate(located.data):
        line = located.line_of((i,)) or 0
        if not isinstance(record, dict):
            problems.append(
                Problem(shown, line, f"[{i}]", "expected a mapping {device, mac, ip, owner}")
            )
            continue
        unknown = [k for k in record if k not in _COLUMNS]
        for k in unknown:
            problems.append(
                Problem(shown, line, f"[{i}].{k}", "unknown key (known: device, mac, ip, owner)")
            )
        out.append((line, {k: (None if v is None else str(v)) for k, v in record.items()}))
    return out, problems


def _row(
    line: int, record: dict[str, Any], shown: str, problems: list[Problem]
) -> InventoryRow | None:
    device = record.get("device")
    if not device:
        problems.append(Problem(shown, line, "device", "missing device id"))
        return None
    mac = record.get("mac")
    ip = record.get("ip")
    if not mac and not ip:
        problems.append(Problem(shown, line, "device", f"device {device!r} needs a mac or an ip"))
        return None
    try:
        mac = normalise_mac(mac) if mac else None
    except ValueError as e:
        problems.append(Problem(shown, line, "mac", str(e)))
        return None
    try:
        ip = str(ipaddress.ip_address(ip)) if ip else None
    except ValueError:
        problems.append(Problem(shown, line, "ip", f"not an IP address: {ip!r}"))
        return None
    return InventoryRow(line, device, mac, ip, record.get("owner"))
