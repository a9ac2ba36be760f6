"""Every chain has an identity, fixed at its first record and carried by every file (its
`file_open`) and every checkpoint; `verify` binds checkpoints to their chain.

Honest changes of a log directory get their own finding, never the words real tampering gets;
every real tampering kind is still caught.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from audit_helpers import Clock, event

from socialguard.audit import AuditLog
from socialguard.audit.files import first_line, list_log_files
from socialguard.audit.verify import Verdict, VerifyResult, verdict, verify_log

CP = "checkpoints"


def write(log_dir: Path, cp: Path, clock: Clock, n: int = 60, node: str = "n1") -> None:
    log = AuditLog(log_dir, node, checkpoint_dir=cp, clock=clock, max_bytes=8192, compress=False)
    for i in range(n):
        clock.advance(30)
        log.write(event(f"h{i}.example"))
    log.close()


def check(log_dir: Path, cp: Path) -> VerifyResult:
    return verify_log(log_dir, checkpoints=cp)


def files_of(log_dir: Path) -> list[Path]:
    return [f.path for f in sorted(list_log_files(log_dir), key=lambda f: f.index)]


def problems(result: VerifyResult) -> str:
    return " | ".join(str(b) for b in result.first_problems())


def findings(result: VerifyResult) -> str:
    return " | ".join(f for c in result.chains.values() for f in c.findings)


def test_every_file_and_checkpoint_carries_the_chain_fixed_at_its_first_record(
    tmp_path: Path, clock: Clock
) -> None:
    write(tmp_path / "log", tmp_path / CP, clock)
    write(tmp_path / "log", tmp_path / CP, clock)  # a restart continues the same chain
    opens = [json.loads(first_line(p) or b"") for p in files_of(tmp_path / "log")]
    ids = {o["chain"] for o in opens}
    cps = [json.loads(x) for x in (tmp_path / CP / "checkpoints-n1.jsonl").read_text().splitlines()]
    assert len(opens) > 3 and len(ids) == 1 and {c["chain"] for c in cps} == ids
    assert {c["log_dir"] for c in cps} == {str((tmp_path / "log").resolve())}
    assert verdict(check(tmp_path / "log", tmp_path / CP)) is Verdict.SELF_CONSISTENT


# -- honest changes: their own finding, never "rewritten" or "cut off" -------------------------


def test_a_new_chain_in_an_emptied_directory_says_what_it_followed(
    tmp_path: Path, clock: Clock
) -> None:
    log, cp = tmp_path / "log", tmp_path / CP
    write(log, cp, clock)
    shutil.move(log, tmp_path / "archive")  # the operator archives the old log
    write(log, cp, clock)
    result = check(log, cp)
    assert result.ok and verdict(result) is Verdict.INCOMPLETE
    assert "began after it" in findings(result) and "rewritten" not in findings(result)
    # the archive, verified as its own directory with the same checkpoints, is intact
    archived = check(tmp_path / "archive", cp)
    assert archived.ok and archived.complete and len(archived.chains) == 1


def test_a_moved_directory_verifies_where_it_now_is(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path / "log", tmp_path / CP, clock)
    shutil.move(tmp_path / "log", tmp_path / "moved")
    write(tmp_path / "moved", tmp_path / CP, clock)  # the proxy now runs with the new --log-dir
    result = check(tmp_path / "moved", tmp_path / CP)
    assert result.ok and result.complete and len(result.chains) == 1


def test_a_directory_restored_from_an_older_copy_starts_a_new_chain_and_says_so(
    tmp_path: Path, clock: Clock
) -> None:
    log, cp = tmp_path / "log", tmp_path / CP
    write(log, cp, clock)
    shutil.copytree(log, tmp_path / "backup")
    write(log, cp, clock)  # more records after the backup
    shutil.rmtree(log)
    shutil.copytree(tmp_path / "backup", log)  # restored from the backup
    write(log, cp, clock)
    result = check(log, cp)
    assert result.ok, problems(result)
    assert verdict(result) is Verdict.INCOMPLETE
    assert "restored from an older copy" in findings(result)
    assert "cut off" not in findings(result) and "rewritten" not in findings(result)


def test_sibling_directories_sharing_one_checkpoint_directory_do_not_poison_each_other(
    tmp_path: Path, clock: Clock
) -> None:
    cp = tmp_path / CP
    write(tmp_path / "a", cp, clock)
    write(tmp_path / "b", cp, clock)  # the same node id, another log directory
    write(tmp_path / "a", cp, clock)
    for d in ("a", "b"):
        result = check(tmp_path / d, cp)
        assert result.ok and result.complete, problems(result) + findings(result)
        assert any("verify that directory" in n for n in result.notes)


def test_two_proxies_with_one_node_id_and_one_collector_do_not_poison_each_other(
    tmp_path: Path, clock: Clock
) -> None:
    """Both run with --node gw and --log-dir /var/log/socialguard (here: the same path, one after
    the other), and ship their checkpoints to one collector."""
    log = tmp_path / "log"
    collector = tmp_path / "collector"
    collector.mkdir()
    for host in ("gw-a", "gw-b"):
        if log.exists():
            shutil.move(log, tmp_path / f"{log.name}-of-gw-a")
        a = AuditLog(log, "gw", checkpoint_dir=tmp_path / host, clock=clock, host=host)
        a.write(event())
        a.close()
        shutil.copy(
            tmp_path / host / "checkpoints-gw.jsonl", collector / f"checkpoints-{host}.jsonl"
        )
    result = check(log, collector)
    assert result.ok and result.complete, problems(result) + findings(result)
    assert any("two proxies run with one --node" in n for n in result.notes)
    moved = check(tmp_path / "log-of-gw-a", collector)  # gw-b's checkpoints name /…/log
    assert moved.ok and moved.complete, problems(moved) + findings(moved)


# -- tampering: still caught -----------------------------------------------------------------


def test_the_newest_file_deleted_is_caught(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path / "log", tmp_path / CP, clock)
    files_of(tmp_path / "log")[-1].unlink()
    result = check(tmp_path / "log", tmp_path / CP)
    assert not result.ok and "cut off" in problems(result)


def test_all_files_deleted_is_caught(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path / "log", tmp_path / CP, clock)
    for p in files_of(tmp_path / "log"):
        p.unlink()
    result = check(tmp_path / "log", tmp_path / CP)
    assert not result.ok and "its log was deleted or replaced" in problems(result)


def test_a_chain_replaced_by_another_is_caught(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path / "log", tmp_path / CP, clock)
    write(tmp_path / "forged", tmp_path / "forged-cp", clock)  # a clean chain made elsewhere
    for p in files_of(tmp_path / "log"):
        p.unlink()
    for p in files_of(tmp_path / "forged"):
        shutil.copy(p, tmp_path / "log" / p.name)
    result = check(tmp_path / "log", tmp_path / CP)
    assert not result.ok and "its log was deleted or replaced" in problems(result)


def test_a_rewritten_chain_keeping_its_id_is_caught(
    tmp_path: Path, clock: Clock, open_log: Callable[..., AuditLog]
) -> None:
    log, cp = tmp_path / "log", tmp_path / CP
    write(log, cp, clock)
    kept_cps = (cp / "checkpoints-n1.jsonl").read_text()
    shutil.rmtree(log)
    write(log, tmp_path / "scratch-cp", clock)  # a new chain...
    first = files_of(log)[0]
    chain = json.loads(first.read_bytes().splitlines()[0])["chain"]
    (cp / "checkpoints-n1.jsonl").write_text(
        kept_cps.replace(json.loads(kept_cps.splitlines()[0])["chain"], chain)
    )
    result = check(log, cp)  # ...claiming the old chain's id: its heads disagree
    assert not result.ok and ("rewritten" in problems(result) or "cut off" in problems(result))
