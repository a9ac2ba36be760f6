"""Every kind of tampering the issue names is detected, at the right place; prune keeps the rest
valid."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest
from audit_helpers import DENVER, Clock, event

from socialguard.audit import AuditLog
from socialguard.audit.chain import seal
from socialguard.audit.checkpoints import generate_keypair, load_public_key
from socialguard.audit.files import list_log_files
from socialguard.audit.prune import prune
from socialguard.audit.verify import Verdict, VerifyResult, summarise, verdict, verify_log


def write_log(
    tmp_path: Path, open_log: Callable[..., AuditLog], clock: Clock, n: int = 120, **kw: object
) -> None:
    kw.setdefault("max_bytes", 8192)
    kw.setdefault("compress", False)
    log = open_log(**kw)
    for i in range(n):
        clock.advance(30)
        log.write(event(f"h{i}.example"))
    log.close()


def log_files(tmp_path: Path) -> list[Path]:
    return [f.path for f in sorted(list_log_files(tmp_path / "log"), key=lambda f: f.index)]


def verify(tmp_path: Path, *, key: bool = False) -> VerifyResult:
    pub = load_public_key(tmp_path / "k.pub") if key else None
    return verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints", public_key=pub)


def only_problem(result: VerifyResult) -> str:
    assert not result.ok
    problems = result.first_problems()
    assert len(problems) == 1
    return str(problems[0])


def edit_lines(path: Path, fn: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"".join(fn(path.read_bytes().splitlines(keepends=True))))


def test_an_untouched_log_verifies(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    result = verify(tmp_path)
    assert result.ok
    chain = result.chains["n1-w0"]
    assert chain.files >= 3 and chain.first_seq == 1 and chain.records == chain.last_seq


def test_editing_a_field_is_detected_at_that_line(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    target = log_files(tmp_path)[1]
    edit_lines(
        target,
        lambda ls: [ls[0], ls[1], ls[2].replace(b'"action":"block"', b'"action":"allow"'), *ls[3:]],
    )
    assert only_problem(verify(tmp_path)).startswith(f"{target}:3: ")
    assert "hash mismatch: the record was altered" in only_problem(verify(tmp_path))


def test_editing_a_field_and_resealing_it_breaks_the_next_link(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    write_log(tmp_path, open_log, clock)
    target = log_files(tmp_path)[1]

    def forge(ls: list[bytes]) -> list[bytes]:
        r = json.loads(ls[2])
        del r["h"]
        r["action"] = "allow"
        line, _ = seal(json.dumps(r, separators=(",", ":")).encode())
        return [ls[0], ls[1], line, *ls[3:]]

    edit_lines(target, forge)
    problem = only_problem(verify(tmp_path))
    assert problem.startswith(f"{target}:4: ") and "prev does not match" in problem


def test_deleting_a_line_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    target = log_files(tmp_path)[0]
    edit_lines(target, lambda ls: [*ls[:5], *ls[6:]])
    problem = only_problem(verify(tmp_path))
    assert (
        problem.startswith(f"{target}:6: ")
        and "expected seq 6, found 7: record 6 missing" in problem
    )


def test_swapping_two_lines_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    target = log_files(tmp_path)[0]
    edit_lines(target, lambda ls: [*ls[:4], ls[5], ls[4], *ls[6:]])
    problem = only_problem(verify(tmp_path))
    assert problem.startswith(f"{target}:5: ") and "expected seq 5, found 6" in problem


def test_inserting_a_line_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    target = log_files(tmp_path)[0]

    def insert(ls: list[bytes]) -> list[bytes]:
        r = json.loads(ls[3])
        del r["h"]
        r["host"] = "fabricated.example"
        line, _ = seal(json.dumps(r, separators=(",", ":")).encode())
        return [*ls[:4], line, *ls[4:]]

    edit_lines(target, insert)
    problem = only_problem(verify(tmp_path))
    assert problem.startswith(f"{target}:5: ")
    assert "expected seq 5, found 4: a record was inserted, repeated or moved here" in problem


def test_deleting_a_middle_file_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    files = log_files(tmp_path)
    assert len(files) >= 3
    files[1].unlink()
    problem = only_problem(verify(tmp_path))
    assert problem.startswith(f"{files[2]}:1: ") and "missing before this file" in problem


def test_deleting_a_middle_gzipped_file_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock, compress=True)
    files = log_files(tmp_path)
    assert files[1].name.endswith(".gz")
    files[1].unlink()
    assert "missing before this file" in only_problem(verify(tmp_path))


def test_deleting_the_first_file_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    files = log_files(tmp_path)
    files[0].unlink()
    problem = only_problem(verify(tmp_path))
    assert problem.startswith(f"{files[1]}:1: ") and "expected seq 1" in problem


@pytest.mark.parametrize("cut", ["line", "file"])
def test_a_truncated_tail_is_detected_with_checkpoints(
    tmp_path: Path, open_log, clock: Clock, cut: str
) -> None:
    write_log(tmp_path, open_log, clock)
    files = log_files(tmp_path)
    if cut == "line":
        edit_lines(files[-1], lambda ls: ls[:-3])
    else:
        files[-1].unlink()
    problem = only_problem(verify(tmp_path))
    assert "the tail was cut off" in problem


def test_without_checkpoints_a_truncated_tail_cannot_be_seen_and_verify_says_so(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    write_log(tmp_path, open_log, clock)
    edit_lines(log_files(tmp_path)[-1], lambda ls: ls[:-3])
    result = verify_log(tmp_path / "log")
    assert result.ok
    assert any("no checkpoints given" in n for n in result.notes)


def test_a_chain_rewritten_from_some_point_is_caught_by_a_checkpoint(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    write_log(tmp_path, open_log, clock)
    files = log_files(tmp_path)
    # Rewrite the last file completely, recomputing every hash from the first edited record on.
    lines = files[-1].read_bytes().splitlines()
    prev = json.loads(lines[0])["prev"]
    out = []
    for raw in lines:
        r = json.loads(raw)
        del r["h"]
        r["prev"] = prev
        if r.get("type") == "decision":
            r["action"] = "allow"
        line, prev = seal(json.dumps(r, separators=(",", ":")).encode())
        out.append(line)
    files[-1].write_bytes(b"".join(out))
    assert verify_log(tmp_path / "log").ok  # the chain alone is consistent again...
    problem = only_problem(verify(tmp_path))  # ...but the checkpoints remember the real heads
    assert "hash differs from checkpoint" in problem and "rewritten" in problem


def test_signed_checkpoints_verify_and_a_forged_one_is_caught(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    write_log(tmp_path, open_log, clock, signing_key=tmp_path / "k.key")
    assert verify(tmp_path, key=True).ok
    cp_file = tmp_path / "checkpoints" / "checkpoints-n1-w0.jsonl"
    cps = cp_file.read_text().splitlines()
    forged = json.loads(cps[0])
    forged["seq"] += 1
    cp_file.write_text("\n".join([json.dumps(forged), *cps[1:]]) + "\n")
    problem = only_problem(verify(tmp_path, key=True))
    assert problem.startswith(f"{cp_file}:1: ") and "signature does not verify" in problem


def test_unsigned_checkpoints_from_before_the_key_anchor_nothing_and_are_not_broken(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    write_log(tmp_path, open_log, clock)
    result = verify(tmp_path, key=True)
    (chain,) = result.chains.values()
    assert result.ok and not result.anchored and verdict(result) is Verdict.SELF_CONSISTENT
    assert chain.unsigned_before_key == chain.checkpoints > 0
    # the proxy gets a key: later checkpoints are signed, and anchor the chain from then on
    log = open_log(signing_key=tmp_path / "k.key")
    log.write(event())
    log.close()
    result = verify(tmp_path, key=True)
    (chain,) = result.chains.values()
    assert verdict(result) is Verdict.ANCHORED and chain.anchored_seq == chain.last_seq
    assert any(
        "written unsigned, before the proxy had a signing key" in s for s in summarise(result)
    )


def test_an_unsigned_checkpoint_after_a_signed_one_is_refused(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    write_log(tmp_path, open_log, clock, signing_key=tmp_path / "k.key")
    log = open_log()  # the key removed: unsigned from here
    log.write(event())
    log.close()
    assert "not signed, but an earlier one of this chain is" in only_problem(
        verify(tmp_path, key=True)
    )


def test_a_renamed_file_is_detected(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    files = log_files(tmp_path)
    new = files[1].with_name(files[1].name.replace("000002", "000009"))
    files[1].rename(new)
    assert "file renamed or moved" in only_problem(verify(tmp_path))


def test_prune_removes_old_files_and_the_rest_still_verifies(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    clock.set(datetime(2026, 11, 20, 8, 0, tzinfo=DENVER))
    log = open_log(max_bytes=8192, compress=True)
    for day in range(4):  # four school days, several files each
        clock.set(datetime(2026, 11, 20 + day, 8, 0, tzinfo=DENVER))
        for i in range(60):
            clock.advance(60)
            log.write(event(f"h{i}.example"))
    log.close()
    before = log_files(tmp_path)
    result = prune(
        tmp_path / "log", date(2026, 11, 22), DENVER, now=datetime(2026, 11, 30, tzinfo=DENVER)
    )
    removed = result.removed["n1-w0"]
    after = log_files(tmp_path)
    assert removed and len(after) == len(before) - len(removed)
    assert all("2026112" in p.name and p.name.split("-")[3] < "20261122" for p in removed)
    checked = verify(tmp_path)
    assert checked.ok, checked.first_problems()
    assert checked.chains["n1-w0"].first_seq == result.kept_from["n1-w0"] > 1
    assert checked.chains["n1-w0"].pruned_before == "2026-11-22"
    anchor = json.loads((tmp_path / "log" / "pruned-n1-w0.json").read_text())
    assert anchor["next_seq"] == result.kept_from["n1-w0"] and len(anchor["removed"]) == len(
        removed
    )
    # the chain still breaks if someone removes a kept file after the prune
    after[1].unlink()
    assert not verify(tmp_path).ok
    # and the writer continues the pruned chain
    log2 = open_log(max_bytes=8192)
    log2.write(event())
    log2.close()


def test_prune_never_removes_the_newest_file(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock)
    prune(tmp_path / "log", date(2030, 1, 1), DENVER, now=datetime(2030, 1, 1, tzinfo=DENVER))
    assert len(log_files(tmp_path)) == 1
    assert verify(tmp_path).ok


def test_an_unreadable_gzip_file_is_reported(tmp_path: Path, open_log, clock: Clock) -> None:
    write_log(tmp_path, open_log, clock, compress=True)
    files = log_files(tmp_path)
    data = gzip.decompress(files[0].read_bytes())
    files[0].write_bytes(gzip.compress(data)[: len(data) // 20])
    assert not verify(tmp_path).ok


def test_a_node_whose_whole_log_is_gone_is_reported_from_its_checkpoints(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    write_log(tmp_path, open_log, clock)
    other = open_log("n2-w0", compress=False)
    other.write(event())
    other.close()
    for p in log_files(tmp_path):
        if "-n2-w0-" in p.name:
            p.unlink()
    problem = only_problem(verify(tmp_path))
    assert "no log files of chain" in problem and "(node n2-w0)" in problem
    assert "its log was deleted or replaced" in problem


def test_verify_passes_while_a_writer_keeps_writing_rotating_and_compressing(
    tmp_path: Path,
) -> None:
    import threading
    import time

    log = AuditLog(
        tmp_path / "log",
        "live-w0",
        checkpoint_dir=tmp_path / "checkpoints",
        max_bytes=32 * 1024,
        fsync_interval_s=0.01,
        checkpoint_interval_s=0.02,
    )
    stop = threading.Event()

    def keep_writing() -> None:
        for i in range(200_000):  # bounded; stopped by the test long before
            if stop.is_set():
                return
            log.write(event(f"h{i}.example"))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        results = []
        for _ in range(5):  # bounded number of verifications during writing
            seen = log.seq
            for _ in range(500):  # bounded wait: let the writer move on (rotate) in between
                if log.seq > seen + 200:
                    break
                time.sleep(0.01)
            results.append(verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints"))
    finally:
        stop.set()
        writer.join(timeout=60)
        log.close()
    for r in results:
        assert r.ok, r.first_problems()
    assert results[-1].chains["live-w0"].files > 1


def test_the_fast_layout_reader_agrees_with_the_full_parser_on_every_line(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    from socialguard.audit.chain import unseal
    from socialguard.audit.verify import _writer_layout

    write_log(tmp_path, open_log, clock, n=60)
    marker = b',"node":"n1-w0",'
    fast_lines = 0
    for p in log_files(tmp_path):
        for raw in p.read_bytes().splitlines(keepends=True):
            record, stored, computed = unseal(raw)
            fast = _writer_layout(raw, marker, "n1-w0")
            if record["type"] in ("file_open", "file_close"):
                assert fast is None
                continue
            assert fast is not None
            fast_lines += 1
            facts, f_stored, f_computed = fast
            assert (facts["seq"], facts["prev"], f_stored, f_computed) == (
                record["seq"],
                record["prev"],
                stored,
                computed,
            )
            edited = raw.replace(b'"action":"block"', b'"action":"allow"')
            assert _writer_layout(edited, marker, "n1-w0")[2] != f_stored  # type: ignore[index]
    assert fast_lines == 60


def _renumber(line: bytes) -> bytes:
    r = json.loads(line)
    r["seq"] += 1
    return line.replace(f'"seq":{r["seq"] - 1},'.encode(), f'"seq":{r["seq"]},'.encode(), 1)


def _other_node(line: bytes) -> bytes:
    """Another node's record, sealed so its own hash holds (and its prev links)."""
    r = json.loads(line)
    del r["h"]
    r["node"] = "n2-w0"
    return seal(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode())[0]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ln: ln.replace(b'"action":"block"', b'"action":"allow"'), "hash mismatch"),
        (lambda ln: ln.replace(b'"action":"block"', b'"action" :"block"'), "hash mismatch"),
        (_renumber, "expected seq"),
        (_other_node, "node 'n2-w0' in n1-w0's chain"),
        (lambda ln: ln[:-20] + b"\n", "unreadable record"),
    ],
)
def test_tampering_deep_in_a_large_file_is_found_at_its_line(  # noqa: PLR0917 - fixtures + params
    tmp_path: Path, open_log, clock: Clock, compress: bool, edit, message: str
) -> None:
    """Verify reads files in blocks of 1 MiB with a straight path for the writer's lines: an edit
    in a later block, of each kind, is named at its line, and the records before it are counted."""
    log = open_log(max_bytes=64 * 1024 * 1024, compress=False)
    for i in range(6000):
        clock.advance(1)
        log.write(event(f"h{i}.example"))
    log.close()
    [target] = log_files(tmp_path)
    lines = target.read_bytes().splitlines(keepends=True)
    assert sum(len(ln) for ln in lines[:4001]) > 1 << 20  # line 4001 is past the first block
    lines[4000] = edit(lines[4000])
    if compress:
        gz = target.with_name(target.name + ".gz")
        gz.write_bytes(gzip.compress(b"".join(lines)))
        target.unlink()
        target = gz
    else:
        target.write_bytes(b"".join(lines))
    result = verify(tmp_path)
    problem = only_problem(result)
    assert problem.startswith(f"{target}:4001: ") and message in problem
    assert result.chains["n1-w0"].last_seq == 4000
