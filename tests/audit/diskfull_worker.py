"""Run inside `unshare --mount` with a small tmpfs at argv[1]: fill the disk, write the decision log
until the kernel refuses, free the disk, write on; print what happened as JSON.

Not a test module: `test_audit_diskfull.py` runs it in its own mount namespace, so the tmpfs is the
process's alone and disappears with it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from socialguard.audit import AuditLog, decision_event, new_decision_id
from socialguard.audit.verify import verify_log
from socialguard.engine.model import Action, Basis, Decision, Principal
from socialguard.errors import AuditError


def _event(n: int) -> dict[str, object]:
    d = Decision(
        action=Action.BLOCK,
        basis=Basis.RULE,
        reason="Board policy: staff shall not use social networking during school hours",
        principal=Principal("10.0.0.5", frozenset({"staff"}), user=f"user{n}"),
        policy_version="pv-diskfull",
        host="www.facebook.com",
        rule_id="staff-social",
        category="social",
    )
    return decision_event(d, decision_id=new_decision_id(), stage="request", client="10.0.0.5")


def _fill(path: Path) -> None:
    """Write zeros until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):  # big blocks, then whatever is left, to the last byte
            try:
                while os.write(fd, b"\0" * size) == size:
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def main() -> None:
    root = Path(sys.argv[1])
    max_bytes = int(sys.argv[2])
    log_dir = root / "log"
    cps = root / "checkpoints"
    log = AuditLog(
        log_dir,
        "full-w0",
        checkpoint_dir=cps,
        compress=False,
        max_bytes=max_bytes or 1 << 20,
        idle_checkpoint_s=3600,
        checkpoint_interval_s=3600,
    )
    ids: list[str] = []
    for n in range(20):
        ev = _event(n)
        log.write(ev)
        ids.append(str(ev["decision_id"]))
    filler = root / "filler"
    _fill(filler)
    if max_bytes == 0:  # the next write rotates: file_close, a new file and its file_open, all full
        log.max_bytes = 4096
    refused = 0
    for n in range(50):  # bounded: a refused write raises, nothing is written
        ev = _event(100 + n)
        try:
            log.write(ev)
        except AuditError:
            refused += 1
        else:  # the file's last page had room: acknowledged, so it must read back
            ids.append(str(ev["decision_id"]))
    checkpoint_while_full = log.checkpoint("requested")
    filler.unlink()
    after: list[str] = []
    for n in range(200):  # enough to rotate at least once with a small max_bytes
        ev = _event(1000 + n)
        log.write(ev)
        after.append(str(ev["decision_id"]))
    log.close()
    result = verify_log(log_dir, checkpoints=cps)
    text = b"".join(p.read_bytes() for p in sorted(log_dir.glob("decisions-*.jsonl")))
    print(
        json.dumps(
            {
                "refused": refused,
                "ok": result.ok,
                "problems": [str(p) for p in result.first_problems()],
                "records": sum(c.records for c in result.chains.values()),
                "found": sum(1 for i in ids + after if i.encode() in text),
                "written": len(ids) + len(after),
                "checkpoint_while_full": checkpoint_while_full is not None,
                "files": len(list(log_dir.glob("decisions-*.jsonl"))),
            }
        )
    )
    os.sync()


if __name__ == "__main__":
    main()
