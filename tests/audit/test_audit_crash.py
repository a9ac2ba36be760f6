"""SIGKILL under load loses no record a writer had acknowledged, and the log still verifies.

A child process writes records as fast as it can and, after each `write()` returns, reports the
record's seq on a pipe (as the proxy releases a response only after writing its record). The test
kills it with SIGKILL mid-stream, then checks that every reported seq is on disk, that `verify`
passes, and that a restarted writer continues the same chain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from socialguard.audit import AuditLog
from socialguard.audit.chain import unseal
from socialguard.audit.files import iter_lines, list_log_files
from socialguard.audit.verify import verify_log

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import structlog
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from socialguard.audit import AuditLog
    log = AuditLog(Path(sys.argv[1]), "crash-w0", checkpoint_dir=Path(sys.argv[2]),
                   max_bytes=32 * 1024, checkpoint_interval_s=0.2, idle_checkpoint_s=0.1)
    out = sys.stdout
    i = 0
    while True:
        seq = log.write({"type": "decision", "host": f"h{i}.example", "action": "block"})
        out.write(f"{seq}\\n")
        out.flush()
        i += 1
    """
)


def on_disk(log_dir: Path) -> set[int]:
    seqs = set()
    for lf in list_log_files(log_dir):
        for _, raw in iter_lines(lf.path):
            if raw.endswith(b"\n"):
                seqs.add(unseal(raw)[0]["seq"])
    return seqs


def test_sigkill_under_load_loses_no_acknowledged_record(tmp_path: Path) -> None:
    log_dir, cp_dir = tmp_path / "log", tmp_path / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(log_dir), str(cp_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    acked: list[int] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # bounded: we stop after 20,000 acknowledgements
            acked.append(int(line))
            if len(acked) >= 10_000:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
        acked.extend(int(x) for x in proc.stdout.read().split())  # reported before it died
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 10_000
    assert set(acked) <= on_disk(log_dir)
    assert len(list_log_files(log_dir)) > 3  # it rotated (and compressed) while under load
    result = verify_log(log_dir, checkpoints=cp_dir)
    assert result.ok, result.first_problems()
    assert result.chains["crash-w0"].last_seq >= max(acked)

    log = AuditLog(log_dir, "crash-w0", checkpoint_dir=cp_dir)
    seq = log.write({"type": "decision", "host": "after.example", "action": "allow"})
    log.close()
    assert seq == result.chains["crash-w0"].last_seq + 2  # the new file's file_open, then this
    again = verify_log(log_dir, checkpoints=cp_dir)
    assert again.ok, again.first_problems()
