"""`audit tail`: the latest records, and following new ones as the proxy writes them.

Following polls the plain (still open) files of every node for complete new lines; a half-written
line is left for the next poll. Closed files are picked up from where they were left before they are
compressed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import files
from .chain import LineError, unseal
from .chains import find_chains
from .schema import TYPE_ADMIN, TYPE_DECISION

SHOWN = (TYPE_DECISION, TYPE_ADMIN)
Offsets = dict[Path, int]  # plain file -> bytes already shown (DONE: a file not to be re-read)
DONE = -1


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record, _, _ = unseal(raw)
    except LineError:
        return None
    return record if record.get("type") in SHOWN else None


def last_records(log_dir: Path, n: int) -> tuple[list[dict[str, Any]], Offsets]:
    """The last `n` decisions and admin events over all nodes, oldest first, and where to follow
    on."""
    chains, _ = find_chains(log_dir)
    offsets: Offsets = {}
    recent: list[tuple[str, int, dict[str, Any]]] = []
    for chain in chains.values():
        keep: deque[tuple[str, int, dict[str, Any]]] = deque(maxlen=max(n, 1))
        for cf in chain.files[-2:]:
            pos = 0
            for _, raw in files.iter_lines(cf.file.path):
                if not raw.endswith(b"\n"):
                    break
                pos += len(raw)
                r = _parse(raw)
                if r is not None:
                    keep.append((str(r.get("ts")), int(r.get("seq", 0)), r))
            if not cf.file.gz:
                offsets[cf.file.path] = pos
        for cf in chain.files:
            offsets.setdefault(cf.file.path.with_name(cf.file.base_name), DONE)
        recent.extend(keep)
    recent.sort(key=lambda t: (t[0], t[1]))
    shown = recent[-n:] if n else []
    return [r for _, _, r in shown], offsets


def follow_records(
    log_dir: Path, offsets: Offsets | None, *, interval_s: float = 0.3, polls: int | None = None
) -> Iterator[dict[str, Any]]:
    """New records as they are written, until interrupted (or after `polls` polls, for tests)."""
    if offsets is None:
        offsets = _current_ends(log_dir)
    seen = {p.name for p in offsets}  # files already shown (or history): gz ones are not re-read
    offsets = {p: at for p, at in offsets.items() if at >= 0}
    done = 0
    while polls is None or done < polls:
        for lf in files.list_log_files(log_dir):
            plain = lf.path.with_name(lf.base_name)
            if lf.gz:
                # compressed since the last poll (or created and compressed in between): finish it
                start = offsets.pop(plain, None)
                if start is not None or lf.base_name not in seen:
                    seen.add(lf.base_name)
                    yield from _records_after(lf.path, start or 0)
                continue
            seen.add(lf.base_name)
            start = offsets.get(plain, 0)
            try:
                with open(plain, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                continue  # compressed meanwhile: picked up as .gz on the next poll
            end = data.rfind(b"\n") + 1
            yield from _complete(data[:end])
            offsets[plain] = start + end
        done += 1
        time.sleep(interval_s)


def _records_after(gz_path: Path, start: int) -> Iterator[dict[str, Any]]:
    with files.open_lines(gz_path) as f:
        f.seek(start)
        data = f.read()
    yield from _complete(data[: data.rfind(b"\n") + 1])


def _complete(data: bytes) -> Iterator[dict[str, Any]]:
    for raw in data.splitlines(keepends=True):
        r = _parse(raw)
        if r is not None:
            yield r


def _current_ends(log_dir: Path) -> Offsets:
    return {
        lf.path.with_name(lf.base_name): DONE if lf.gz else lf.path.stat().st_size
        for lf in files.list_log_files(log_dir)
    }
