"""Which admin events a node's chain already holds, by event id: how a restarted proxy delivers
each event exactly once when its predecessor died between writing events and confirming them."""

from __future__ import annotations

from pathlib import Path

from . import files
from .chain import LineError, unseal
from .chains import find_chains
from .schema import TYPE_ADMIN

_EVENT_ID = b'"event_id":"'


def admin_event_ids_in_log(log_dir: Path, node: str, wanted: set[str], since: str) -> set[str]:
    """The ids of `wanted` that `node`'s chain holds. Files are read newest first, and reading
    stops at the first file that began before `since` (an ISO-8601 UTC time, compared as text):
    the events were claimed after it, so no older file can hold them."""
    found: set[str] = set()
    if not wanted or not log_dir.is_dir():
        return found
    chains, _ = find_chains(log_dir)
    chain = chains.get(node)
    if chain is None:
        return found
    for cf in reversed(chain.files):
        for _, line in files.iter_lines_containing(cf.file.path, _EVENT_ID):
            try:
                record, _, _ = unseal(line)
            except LineError:
                continue
            details = record.get("details")
            if record.get("type") == TYPE_ADMIN and isinstance(details, dict):
                event_id = details.get("event_id")
                if event_id in wanted:
                    found.add(event_id)
        if found == wanted or cf.first_ts < since:
            break
    return found
