"""Finding the chains in a log directory: which files belong to which node, in chain order.

A directory may hold several nodes' chains (`--workers N`, or logs gathered from several proxies).
Files are grouped by the `node` of their first record and ordered by its `seq` — the chain's own
facts, not file names, which anyone can change. A prune anchor (`pruned-<node>.json`, written by
`socialguard audit prune`) says where a pruned chain now starts.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialguard.errors import AuditError

from . import files
from .chain import GENESIS, LineError, unseal

LEGACY_PREFIX = "legacy:"


def chain_id_of(record: dict[str, Any]) -> str:
    """A record's chain: the `chain` its file's `file_open` (or a checkpoint) carries, fixed when
    the chain began. Files and checkpoints written before chains had ids belong to `legacy:<node>`,
    which a writer continuing such a chain keeps using."""
    chain = record.get("chain")
    return str(chain) if chain else f"{LEGACY_PREFIX}{record.get('node')}"


@dataclass(frozen=True, slots=True)
class ChainFile:
    """A log file and the first record in it."""

    file: files.LogFile
    first_seq: int
    first_ts: str
    node: str
    chain_id: str = ""
    opening: dict[str, Any] = field(default_factory=dict)  # the file's first record


@dataclass(slots=True)
class Chain:
    """One node's files in chain order, where the chain starts, and files that could not be
    placed."""

    node: str
    files: list[ChainFile] = field(default_factory=list)
    chain_id: str = ""
    start_seq: int = 1
    start_prev: str = GENESIS
    anchor: dict[str, Any] | None = None

    @property
    def follows(self) -> dict[str, Any] | None:
        """What the chain's first record says about the chain before it, if it is there: the
        writer found a node's checkpoints but none (or not all) of its records in the directory."""
        if not self.files or self.files[0].first_seq != 1:
            return None
        f = self.files[0].opening.get("follows")
        return f if isinstance(f, dict) else None


@dataclass(frozen=True, slots=True)
class Unplaced:
    """A file whose first line could not be read: it cannot be placed in any chain."""

    path: Path
    problem: str
    in_progress: bool = False  # the newest file of its node, still being created: not a problem


def read_anchor(log_dir: Path, node: str) -> dict[str, Any] | None:
    """The prune anchor of a node, if the chain was pruned."""
    path = anchor_path(log_dir, node)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuditError(f"{path}: unreadable prune anchor: {e}") from e
    if not isinstance(data, dict) or "next_seq" not in data or "next_prev" not in data:
        raise AuditError(f"{path}: not a prune anchor (needs next_seq and next_prev)")
    return data


def anchor_path(log_dir: Path, node: str) -> Path:
    return log_dir / f"{files.PRUNE_ANCHOR_PREFIX}{files.safe_node(node)}.json"


def write_anchor(log_dir: Path, node: str, data: dict[str, Any]) -> None:
    """Replace a node's prune anchor atomically."""
    path = anchor_path(log_dir, node)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    files.fsync_dir(log_dir)


def find_chains(log_dir: Path) -> tuple[dict[str, Chain], list[Unplaced]]:
    """Every chain in a directory, plus the files that could not be placed. Keyed by node, or by
    `node (chain ID)` for a node with several chains here (a new chain after a restore, two
    proxies with one node id)."""
    if not log_dir.is_dir():
        raise AuditError(f"{log_dir}: no such log directory")
    by_id: dict[tuple[str, str], Chain] = {}
    unplaced: list[Unplaced] = []
    listed = files.list_log_files(log_dir)
    newest: dict[str, int] = {}
    for lf in listed:
        newest[lf.node_in_name] = max(newest.get(lf.node_in_name, 0), lf.index)
    for lf in listed:
        try:
            line = files.first_line(lf.path)
        except (OSError, EOFError, zlib.error) as e:
            unplaced.append(Unplaced(lf.path, f"cannot read: {e}"))
            continue
        if line is None or not line.endswith(b"\n"):
            fresh = not lf.gz and lf.index == newest[lf.node_in_name]
            what = "empty file" if line is None else "incomplete first line"
            unplaced.append(Unplaced(lf.path, what, in_progress=fresh))
            continue
        try:
            record, _, _ = unseal(line)
            node, seq, ts = str(record["node"]), int(record["seq"]), str(record["ts"])
        except (LineError, KeyError, TypeError, ValueError) as e:
            unplaced.append(Unplaced(lf.path, f"first record unreadable: {e}"))
            continue
        cid = chain_id_of(record)
        chain = by_id.setdefault((node, cid), Chain(node, chain_id=cid))
        chain.files.append(ChainFile(lf, seq, ts, node, cid, record))
    per_node: dict[str, int] = {}
    for node, _ in by_id:
        per_node[node] = per_node.get(node, 0) + 1
    chains: dict[str, Chain] = {}
    for (node, cid), chain in sorted(by_id.items(), key=lambda kv: kv[1].files[0].first_ts):
        chain.files.sort(key=lambda f: (f.first_seq, f.file.index))
        anchor = read_anchor(log_dir, chain.node)
        if anchor is not None and (
            chain_id_of({**anchor, "node": node}) == cid
            or (not anchor.get("chain") and per_node[node] == 1)  # written before chain ids
        ):
            chain.anchor = anchor
            chain.start_seq = int(anchor["next_seq"])
            chain.start_prev = str(anchor["next_prev"])
        chains[node if per_node[node] == 1 else f"{node} (chain {cid})"] = chain
    return chains, unplaced
