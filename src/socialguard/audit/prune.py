"""Retention: removing old log files while keeping the rest verifiable.

Only a prefix of each chain is removed (never a file in the middle, never the newest file, never a
file still open), and only files whose last record is before the cut-off. Before anything is
deleted, the node's prune anchor (`pruned-<node>.json`) records where the chain now starts (the
first kept record's `seq` and `prev`) and what was removed, so `audit verify` checks the kept files
from there instead of reporting the removed beginning as missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from socialguard.errors import AuditError

from . import files
from .chain import LineError, unseal
from .chains import ChainFile, find_chains, write_anchor
from .schema import TYPE_FILE_CLOSE, TYPE_FILE_OPEN


@dataclass(slots=True)
class PruneResult:
    """What prune removed (or, on a dry run, would remove), per node."""

    removed: dict[str, list[Path]] = field(default_factory=dict)
    kept_from: dict[str, int] = field(default_factory=dict)


def _last_record(path: Path) -> dict[str, Any]:
    last = b""
    for _, line in files.iter_lines(path):
        last = line
    try:
        record, stored, _ = unseal(last)
    except LineError as e:
        raise AuditError(
            f"{path}: last record unreadable ({e}); run `socialguard audit verify`"
        ) from e
    record["h"] = stored
    return record


def _first_record(path: Path) -> dict[str, Any]:
    line = files.first_line(path) or b""
    try:
        record, _, _ = unseal(line)
    except LineError as e:
        raise AuditError(f"{path}:1: first record unreadable ({e})") from e
    return record


def prune(
    log_dir: Path, before: date, tz: ZoneInfo, *, now: datetime, dry_run: bool = False
) -> PruneResult:
    """Remove each chain's files that ended before local midnight starting `before`."""
    cutoff = datetime.combine(before, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    cutoff_ts = cutoff.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    result = PruneResult()
    chains, _ = find_chains(log_dir)
    for node, chain in sorted(chains.items()):
        if node != chain.node:
            continue  # a node with several chains here: one prune anchor cannot serve them all
        live = [cf for cf in chain.files if cf.first_seq >= chain.start_seq]
        doomed: list[tuple[ChainFile, dict[str, Any]]] = []
        for cf in live[:-1]:  # never the newest file of a chain
            last = _last_record(cf.file.path)
            if last.get("type") != TYPE_FILE_CLOSE or str(last.get("ts")) >= cutoff_ts:
                break
            doomed.append((cf, last))
        if not doomed:
            continue
        keep = live[len(doomed)]
        first_kept = _first_record(keep.file.path)
        last_removed = doomed[-1][1]
        if first_kept.get("type") != TYPE_FILE_OPEN or first_kept.get("prev") != last_removed["h"]:
            raise AuditError(
                f"{keep.file.path}:1: does not continue {doomed[-1][0].file.path}; "
                "run `socialguard audit verify` before pruning"
            )
        result.removed[node] = [cf.file.path for cf, _ in doomed]
        result.kept_from[node] = int(first_kept["seq"])
        if dry_run:
            continue
        history = list((chain.anchor or {}).get("removed", []))
        history.extend(
            {
                "file": cf.file.base_name,
                "first_seq": cf.first_seq,
                "last_seq": last["seq"],
                "last_h": last["h"],
            }
            for cf, last in doomed
        )
        write_anchor(
            log_dir,
            chain.node,
            {
                "node": chain.node,
                "chain": chain.chain_id,
                "next_seq": int(first_kept["seq"]),
                "next_prev": str(first_kept["prev"]),
                "pruned_before": before.isoformat(),
                "pruned_at": now.astimezone(UTC).isoformat(),
                "removed": history,
            },
        )
        for cf, _ in doomed:
            cf.file.path.unlink()
        files.fsync_dir(log_dir)
    return result
