"""Verifying the decision log: follow each node's chain and compare it with its signed checkpoints.

What each check catches:
- `h` recomputed from the line's bytes: an edited record.
- `seq` contiguous from the chain's start: a removed, inserted or reordered record, a removed file.
- `prev` equal to the previous record's `h`: the same, even when the attacker renumbers.
- `file_open`/`file_close` naming their file, its predecessor and its record count: a removed,
  renamed or truncated file in the middle.
- checkpoints (signed with Ed25519, kept elsewhere): a chain rewritten from some point on (head
  mismatch) and a cut-off tail (a checkpoint beyond the log's end).

The result names the first broken place of each chain as `file:line` and what is wrong there.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import files
from .chain import H_MARK, LEAF_HASHER, LineError, leaf_hash, unseal
from .chains import Chain, chain_id_of, find_chains
from .checkpoints import StoredCheckpoint, key_id, read_checkpoints, signature_valid
from .schema import TYPE_FILE_CLOSE, TYPE_FILE_OPEN


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken place found in a chain."""

    node: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class ChainReport:
    """What verification found for one node."""

    node: str
    chain_id: str = ""
    records: int = 0
    files: int = 0
    first_seq: int = 0
    last_seq: int = 0
    head: str = ""
    checkpoints: int = 0
    last_checkpoint_ts: str | None = None
    pruned_before: str | None = None
    problem: Break | None = None
    notes: list[str] = field(default_factory=list)
    last_where: str = ""
    # records that belong to the chain but are not in this directory, for a reason the chain
    # itself declares (a new chain, a restored directory): not tampering, but not complete
    findings: list[str] = field(default_factory=list)
    anchored_seq: int = 0  # the last seq a checkpoint signed with the auditor's key covers
    unsigned_before_key: int = 0


@dataclass(slots=True)
class VerifyResult:
    """Every chain's report, plus problems that belong to no chain (unreadable files)."""

    chains: dict[str, ChainReport] = field(default_factory=dict)
    problems: list[Break] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No evidence of tampering (records may still be missing: see `complete`)."""
        return not self.problems and all(c.problem is None for c in self.chains.values())

    @property
    def complete(self) -> bool:
        return all(not c.findings for c in self.chains.values())

    @property
    def anchored(self) -> bool:
        """Every chain here checked up to a checkpoint signed with the auditor's key."""
        present = [c for c in self.chains.values() if c.files]
        return bool(present) and all(c.anchored_seq > 0 for c in present)

    def first_problems(self) -> list[Break]:
        return [*self.problems, *(c.problem for c in self.chains.values() if c.problem)]


class _Broken(Exception):
    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message


def verify_log(
    log_dir: Path,
    *,
    checkpoints: Path | None = None,
    public_key: Ed25519PublicKey | None = None,
    anchor: Path | None = None,
) -> VerifyResult:
    """Verify every chain in `log_dir` (and checkpoints from a file or directory, if given).

    `anchor` is an off-box copy of the checkpoints (the syslog collector's file): its heads are
    checked like any checkpoint's, and every record up to the last of them is anchored.

    Checkpoints are bound to their chain by its id: a checkpoint of a chain that is not in the
    directory is reported as what it is — the log of another directory, a chain that a later one
    says it followed, or a log that is gone — never as a rewrite of the chain that is here."""
    result = VerifyResult()
    # Checkpoints first: a running writer may add records and checkpoints while we read, and a
    # checkpoint read before the log can only cover records already on disk.
    by_chain: dict[str, list[StoredCheckpoint]] = {}
    if checkpoints is not None and checkpoints.exists():
        for cp in read_checkpoints(checkpoints):
            by_chain.setdefault(chain_id_of(cp.data), []).append(cp)
    anchored: dict[str, int] = {}
    if anchor is not None:
        for cp in read_checkpoints(anchor):
            if cp.data.get("type") != "checkpoint" and "h" in cp.data:
                continue  # a record shipped with --audit-syslog-records, not a checkpoint
            cid = chain_id_of(cp.data)
            by_chain.setdefault(cid, []).append(cp)
            try:
                anchored[cid] = max(anchored.get(cid, 0), int(cp.data["seq"]))
            except (KeyError, TypeError, ValueError):
                continue  # reported by the walk's checkpoint checks
    chains, unplaced = find_chains(log_dir)
    for u in unplaced:
        if u.in_progress:
            result.notes.append(f"{u.path}: {u.problem} (being created by the writer)")
        else:
            result.problems.append(Break("?", f"{u.path}:1", u.problem))
    if checkpoints is None or not checkpoints.exists():
        result.notes.append(
            "no checkpoints given: a cut-off tail or a chain rewritten from some point on "
            "cannot be detected"
        )
    if checkpoints is not None and public_key is None and by_chain:
        result.notes.append("checkpoint signatures not checked (no --key given)")
    followers = {str(c.follows.get("chain")): c for c in chains.values() if c.follows is not None}
    for key, chain in chains.items():
        follower = followers.get(chain.chain_id)
        report = _verify_chain(chain, by_chain.get(chain.chain_id, []), public_key, follower)
        if report.problem is None and chain.chain_id in anchored:
            report.anchored_seq = max(
                report.anchored_seq, min(anchored[chain.chain_id], report.last_seq)
            )
        result.chains[key] = report
    per_node: dict[str, int] = {}
    for chain in chains.values():
        per_node[chain.node] = per_node.get(chain.node, 0) + 1
    for node, n in sorted(per_node.items()):
        if n > 1:
            result.notes.append(
                f"node {node} has {n} chains in this directory (a new chain after a restore or "
                "a moved directory, or two proxies run with one --node): each is verified alone"
            )
    present = {c.chain_id for c in chains.values()}
    hosts: dict[str, set[str]] = {}  # node -> machines that wrote its chains here
    for c in chains.values():
        hosts.setdefault(c.node, set()).update(
            str(cp.data["host"]) for cp in by_chain.get(c.chain_id, []) if cp.data.get("host")
        )
    here = log_dir.resolve()
    for cid, cps in sorted(by_chain.items()):
        if cid not in present:
            _absent_chain(result, cid, cps, public_key, here, followers.get(cid), hosts)
    return result


def _absent_chain(  # noqa: PLR0917 - the facts about one absent chain
    result: VerifyResult,
    cid: str,
    cps: list[StoredCheckpoint],
    public_key: Ed25519PublicKey | None,
    here: Path,
    follower: Chain | None,
    hosts: dict[str, set[str]],
) -> None:
    """Checkpoints of a chain that has no file in the directory."""
    node = str(cps[-1].data.get("node"))
    report = ChainReport(node, chain_id=cid)
    try:
        expected = _checkpoint_heads(Chain(node, chain_id=cid), cps, public_key, report)
    except _Broken as b:
        report.problem = Break(node, b.where, b.message)
        result.chains[f"{node} (chain {cid})"] = report
        return
    seq = max(expected, default=0)
    last = expected[seq][1] if expected else cps[-1]
    elsewhere = last.data.get("log_dir")
    if elsewhere and Path(str(elsewhere)) != here and follower is None:
        result.notes.append(
            f"chain {cid} of node {node}: {len(cps)} checkpoints (to seq {seq}) are of the log "
            f"in {elsewhere}, not this directory; verify that directory for it"
        )
        return
    host = last.data.get("host")
    if follower is None and host and hosts.get(node) and host not in hosts[node]:
        result.notes.append(
            f"chain {cid} of node {node} was written on {host}, not on the machine of this "
            f"directory's chain ({', '.join(sorted(hosts[node]))}): two proxies run with one "
            "--node; verify that proxy's own log directory for it"
        )
        return
    if follower is not None:
        began = follower.files[0].first_ts
        report.findings.append(
            f"chain {cid} (checkpoints to seq {seq}, last at {last.data.get('ts')}) is not in "
            f"this directory; chain {follower.chain_id} began after it at {began} in a log "
            "directory that held none of its files (a new or moved log directory, or its files "
            "were removed): verify its own directory, or its archive, for those records"
        )
    else:
        report.problem = Break(
            node,
            last.where,
            f"no log files of chain {cid} (node {node}) in this directory, but this checkpoint "
            f"records seq {seq}: its log was deleted or replaced by another chain "
            "(or the wrong directory was given)",
        )
    result.chains[f"{node} (chain {cid})"] = report


def _verify_chain(
    chain: Chain,
    cps: list[StoredCheckpoint],
    public_key: Ed25519PublicKey | None,
    follower: Chain | None = None,
) -> ChainReport:
    report = ChainReport(chain.node, chain_id=chain.chain_id, files=len(chain.files))
    if chain.anchor is not None:
        report.pruned_before = str(chain.anchor.get("pruned_before"))
    signature_problem: _Broken | None = None
    try:
        expected = _checkpoint_heads(chain, cps, public_key, report)
    except _Broken as b:  # still walk the chain, so the summary says what is there
        signature_problem, expected = b, {}
    try:
        _walk(chain, expected, report)
        if signature_problem is not None:
            raise signature_problem
        _check_tail(expected, report, follower)
    except _Broken as b:
        report.problem = Break(chain.node, b.where, b.message)
    return report


def _checkpoint_heads(
    chain: Chain,
    cps: list[StoredCheckpoint],
    public_key: Ed25519PublicKey | None,
    report: ChainReport,
) -> dict[int, tuple[str, StoredCheckpoint]]:
    """Check signatures; return seq -> (head, checkpoint) for the checkpoints still in range.

    With a key, checkpoints written unsigned before the chain's first signed one (the proxy had no
    key yet) are counted and still compared, not refused; an unsigned one after a signed one is."""
    wanted_key = key_id(public_key) if public_key is not None else None
    heads: dict[int, tuple[str, StoredCheckpoint]] = {}
    signed_seen = False
    for cp in cps:
        try:
            seq, head = int(cp.data["seq"]), str(cp.data["head"])
        except (KeyError, TypeError, ValueError) as e:
            raise _Broken(cp.where, f"checkpoint lacks a valid seq/head ({e})") from e
        if public_key is not None:
            if cp.data.get("sig") is None:
                if signed_seen:
                    raise _Broken(
                        cp.where,
                        "checkpoint is not signed, but an earlier one of this chain is "
                        "(forged, or the signing key was removed)",
                    )
                report.unsigned_before_key += 1
            elif cp.data.get("key") != wanted_key:
                raise _Broken(
                    cp.where,
                    f"checkpoint signed with key {cp.data.get('key')}, "
                    f"not the given key {wanted_key}",
                )
            elif not signature_valid(cp.data, public_key):
                raise _Broken(cp.where, "checkpoint signature does not verify (forged or altered)")
            else:
                signed_seen = True
                report.anchored_seq = max(report.anchored_seq, seq)
        report.checkpoints += 1
        report.last_checkpoint_ts = str(cp.data.get("ts"))
        if seq < chain.start_seq:
            continue  # before the prune point
        prior = heads.get(seq)
        if prior is not None and prior[0] != head:
            raise _Broken(
                cp.where,
                f"checkpoint for seq {seq} disagrees with {prior[1].where} (two different chains)",
            )
        heads[seq] = (head, cp)
    return heads


def _walk(
    chain: Chain, expected: dict[int, tuple[str, StoredCheckpoint]], report: ChainReport
) -> None:
    """Follow the chain record by record across its files."""
    seq = chain.start_seq - 1
    prev = chain.start_prev
    node_marker = b',"node":' + json.dumps(chain.node, ensure_ascii=False).encode() + b","
    prev_file: str | None = None
    prev_closed = True
    where = ""
    report.first_seq = chain.start_seq  # the summary is right even when the walk stops early
    for index, cf in enumerate(chain.files):
        if cf.first_seq < chain.start_seq:
            report.notes.append(
                f"{cf.file.path}: before the prune point (seq {chain.start_seq}); skipped"
            )
            continue
        name = cf.file.base_name
        walk = _FileWalk(seq, prev, node_marker, chain.node, expected, report)
        last_in_chain = index == len(chain.files) - 1
        for base, lines, complete in _blocks(cf.file.path):
            if complete:
                walk.lines(lines, base, cf.file.path, name, prev_file, prev_closed)
            else:
                walk.last(lines[0], base + 1, cf.file.path, last_in_chain)
        seq, prev, count, closed, where = walk.seq, walk.prev, walk.count, walk.closed, walk.where
        if count == 0:
            raise _Broken(f"{cf.file.path}:1", "empty file in the chain")
        prev_file, prev_closed = name, closed
    report.last_seq = seq
    report.head = prev
    if chain.files and not prev_closed:
        report.notes.append(
            f"{chain.files[-1].file.path}: open (the writer is running, or stopped hard)"
        )
    report.last_where = where


class _FileWalk:
    """One file of a chain, checked line by line.

    The writer's own decision lines (nearly all of them) take a straight path with the same
    checks as `_read_record` + `_check_link` on the writer's layout, made on bytes in one loop:
    no per-line generator, string or record. Any line that path does not accept — the file's
    first line, bookkeeping, a checkpointed seq, another layout, anything wrong — goes through the
    full checks, which accept it or name what is wrong. So the straight path decides nothing the
    full checks would decide otherwise; it is only faster (issue 18: 1M records in <= 10 s)."""

    def __init__(  # noqa: PLR0917 - the chain's state at the start of the file
        self,
        seq: int,
        prev: str,
        node_marker: bytes,
        node: str,
        expected: dict[int, tuple[str, StoredCheckpoint]],
        report: ChainReport,
    ) -> None:
        self.seq = seq
        self.prev = prev
        self.node_marker = node_marker
        self.node = node
        self.expected = expected
        self.report = report
        self.count = 0
        self.closed = False
        self.where = ""
        self.done = False  # an incomplete last line ends the walk of the file

    def lines(  # noqa: PLR0917 - the file's facts, passed to the full checks
        self,
        lines: list[bytes],
        base: int,
        path: Path,
        name: str,
        prev_file: str | None,
        prev_closed: bool,
    ) -> None:
        """Check a block of lines (without their newlines) that follow line `base` of `path`."""
        if self.done:
            return
        seq, prev = self.seq, self.prev
        link = b',"prev":"' + prev.encode("ascii", "replace") + b'","h":"'
        expected, marker = self.expected, self.node_marker
        head_len = 64 + len(marker)
        copy = LEAF_HASHER.copy
        lineno = base
        fast = 0
        for line in lines:
            lineno += 1
            n = seq + 1
            digits = b"%d," % n
            if (
                lineno > 1
                and not self.closed
                and len(line) >= 160
                and line[-146:-66] == link
                and line[-2:] == b'"}'
                and line.startswith(_HEAD)
                and line.startswith(digits, 13)
                and n not in expected
            ):
                head = line[: 12 + len(digits) + head_len]
                if marker in head and _BOOKKEEPING not in head:
                    hasher = copy()
                    hasher.update(line[:-72])
                    hasher.update(b"}")
                    stored = line[-66:-2]
                    if hasher.hexdigest().encode("ascii") == stored:
                        seq = n
                        link = b',"prev":"' + stored + b'","h":"'
                        fast += 1
                        continue
            # the full checks, from the state the straight path has reached
            self.count += fast
            self.report.records += fast
            fast = 0
            if seq != self.seq:
                self.seq, self.prev = seq, link[9:73].decode("ascii")
                self.report.last_seq = seq
            self._one(line + b"\n", lineno, path, name, prev_file, prev_closed)
            seq, prev = self.seq, self.prev
            link = b',"prev":"' + prev.encode("ascii", "replace") + b'","h":"'
        self.count += fast
        self.report.records += fast
        if seq != self.seq:
            self.seq, self.prev = seq, link[9:73].decode("ascii")
        if lines:
            self.where = f"{path}:{lineno}"
        self.report.last_seq = self.seq

    def last(self, raw: bytes, lineno: int, path: Path, last_in_chain: bool) -> None:
        """The file's last line, which has no newline."""
        if self.done:
            return
        self.where = where = f"{path}:{lineno}"
        if self.closed:
            raise _Broken(where, "record after file_close (appended to a closed file)")
        if last_in_chain:
            self.report.notes.append(f"{where}: incomplete last line (being written, or torn)")
            self.done = True
            return
        raise _Broken(where, "incomplete line in the middle of the chain")

    def _one(  # noqa: PLR0917 - one line and its file's facts
        self,
        raw: bytes,
        lineno: int,
        path: Path,
        name: str,
        prev_file: str | None,
        prev_closed: bool,
    ) -> None:
        where = f"{path}:{lineno}"
        if self.closed:
            raise _Broken(where, "record after file_close (appended to a closed file)")
        record, stored, computed = _read_record(raw, self.node_marker, self.node, where)
        self.count += 1
        rseq = _check_link(record, stored, computed, self.seq, self.prev, self.node, where, lineno)
        if lineno == 1:
            _check_open(record, name, prev_file, prev_closed, where)
        elif record.get("type") == TYPE_FILE_OPEN:
            raise _Broken(where, f"seq {rseq}: file_open in the middle of a file")
        if record.get("type") == TYPE_FILE_CLOSE:
            _check_close(record, name, self.count, where)
            self.closed = True
        hit = self.expected.get(rseq)
        if hit is not None and hit[0] != stored:
            raise _Broken(
                where,
                f"seq {rseq}: hash differs from checkpoint {hit[1].where}: "
                "the chain was rewritten from here or earlier",
            )
        self.seq, self.prev = rseq, stored
        self.report.records += 1
        self.report.last_seq = rseq


def _blocks(path: Path) -> Iterator[tuple[int, list[bytes], bool]]:
    """(lines before, lines without their newline, complete) for each block of a file; a last
    line without a newline comes alone, not complete. A damaged file (bad gzip, I/O error) is a
    break at the line it stops."""
    base = 0
    rest = b""
    try:
        with files.open_lines(path) as f:
            while block := f.read(files.CHUNK):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                yield base, lines, True
                base += len(lines)
    except (OSError, EOFError, zlib.error) as e:
        raise _Broken(f"{path}:{base + 1}", f"file unreadable from here: {e}") from e
    if rest:
        yield base, [rest], False


_HEAD = b'{"v":1,"seq":'
_BOOKKEEPING = b'"type":"file_'


def _writer_layout(
    raw: bytes, node_marker: bytes, node: str
) -> tuple[dict[str, Any], str, str] | None:
    """(seq/prev/node, stored h, recomputed h) of a decision or admin line, read from the writer's
    fixed layout without parsing the JSON (the hash covers every byte, so nothing is skipped);
    None for anything else (file_open/file_close, another layout), which is parsed in full."""
    line = raw[:-1]
    if (
        len(line) < 160
        or not line.startswith(_HEAD)
        or line[-72:-66] != H_MARK
        or line[-146:-137] != b',"prev":"'
        or line[-2:] != b'"}'
    ):
        return None
    comma = line.find(b",", 13, 40)
    head = line[: comma + 64 + len(node_marker)]
    if comma < 0 or node_marker not in head or _BOOKKEEPING in head:
        return None
    try:
        seq = int(line[13:comma])
    except ValueError:
        return None
    stored = line[-66:-2].decode("ascii", "replace")
    prev = line[-137:-73].decode("ascii", "replace")
    return {"seq": seq, "prev": prev, "node": node}, stored, leaf_hash(line[:-72] + b"}")


def _read_record(
    raw: bytes, node_marker: bytes, node: str, where: str
) -> tuple[dict[str, Any], str, str]:
    fast = _writer_layout(raw, node_marker, node)
    if fast is not None:
        return fast
    try:
        return unseal(raw)
    except LineError as e:
        raise _Broken(where, f"unreadable record: {e}") from e


def _check_link(  # noqa: PLR0917 - the facts of one link, all needed
    record: dict[str, Any],
    stored: str,
    computed: str,
    seq: int,
    prev: str,
    node: str,
    where: str,
    lineno: int,
) -> int:
    """Check one record against the one before it; return its seq."""
    rseq = _seq_of(record, where)
    if rseq != seq + 1:
        raise _Broken(where, _seq_message(seq + 1, rseq, lineno))
    if stored != computed:
        raise _Broken(where, f"seq {rseq}: hash mismatch: the record was altered")
    if record.get("prev") != prev:
        raise _Broken(
            where,
            f"seq {rseq}: prev does not match the hash of seq {seq}: a record before it "
            "was replaced, or this one was moved here",
        )
    if record.get("node") != node:
        raise _Broken(where, f"seq {rseq}: node {record.get('node')!r} in {node}'s chain")
    return rseq


def _seq_of(record: dict[str, Any], where: str) -> int:
    seq = record.get("seq")
    if not isinstance(seq, int):
        raise _Broken(where, "record has no integer seq")
    return seq


def _seq_message(want: int, got: int, lineno: int) -> str:
    if got > want:
        what = "record" if got == want + 1 else "records"
        span = f"{want}" if got == want + 1 else f"{want}..{got - 1}"
        where = "before this file" if lineno == 1 else "here"
        return f"expected seq {want}, found {got}: {what} {span} missing {where} (removed?)"
    return f"expected seq {want}, found {got}: a record was inserted, repeated or moved here"


def _check_open(
    record: dict[str, Any], name: str, prev_file: str | None, prev_closed: bool, where: str
) -> None:
    if record.get("type") != TYPE_FILE_OPEN:
        raise _Broken(where, "file does not begin with file_open (its beginning was cut off?)")
    if record.get("file") != name:
        raise _Broken(where, f"file_open names {record.get('file')!r}: file renamed or moved")
    if prev_file is not None and record.get("prev_file") != prev_file:
        raise _Broken(
            where,
            f"file_open says the previous file was {record.get('prev_file')!r}, "
            f"but the chain's previous file is {prev_file!r} (a file is missing)",
        )
    if prev_file is not None and not prev_closed and not record.get("recovered"):
        raise _Broken(where, f"previous file {prev_file} ends without file_close (tail cut off?)")


def _check_close(record: dict[str, Any], name: str, count: int, where: str) -> None:
    if record.get("file") != name:
        raise _Broken(where, f"file_close names {record.get('file')!r}: file renamed or moved")
    if record.get("count") != count:
        raise _Broken(
            where, f"file_close counts {record.get('count')} records but the file has {count}"
        )


def _check_tail(
    expected: dict[int, tuple[str, StoredCheckpoint]],
    report: ChainReport,
    follower: Chain | None = None,
) -> None:
    """A checkpoint beyond the last record means the log lost its tail — declared by the chain
    that began after it (the writer found its directory behind its checkpoints: restored from an
    older copy), or not."""
    beyond = [s for s in expected if s > report.last_seq]
    if beyond:
        seq = max(beyond)
        _, cp = expected[seq]
        declared = follower.follows if follower is not None else None
        if declared is not None and declared.get("log_ends_at") == report.last_seq:
            report.findings.append(
                f"records {report.last_seq + 1}..{seq} of this chain are not in this log: when "
                f"chain {follower.chain_id if follower else '?'} began at "
                f"{follower.files[0].first_ts if follower else '?'}, the directory held this chain "
                f"only to seq {report.last_seq} while its checkpoints reached seq {seq} (restored "
                "from an older copy, or those records were removed)"
            )
            return
        if report.files == 0:
            raise _Broken(
                cp.where,
                f"no log files for node {report.node} in this directory, but this checkpoint "
                f"records seq {seq}: its log is missing (or was given the wrong directory)",
            )
        where = report.last_where or report.node
        raise _Broken(
            where,
            f"log ends at seq {report.last_seq}, but checkpoint {cp.where} "
            f"(at {cp.data.get('ts')}) records seq {seq}: the tail was cut off",
        )


class Verdict(StrEnum):
    """What a verification proved, strongest claim last."""

    BROKEN = "broken"  # evidence of tampering (or damage): the first broken place is named
    INCOMPLETE = "incomplete"  # no tampering in what is here, but known records are elsewhere
    SELF_CONSISTENT = "self-consistent"  # unbroken, but checked against nothing held elsewhere
    ANCHORED = "anchored"  # unbroken and matching checkpoints signed with the auditor's key


def verdict(result: VerifyResult) -> Verdict:
    if not result.ok:
        return Verdict.BROKEN
    if not result.complete:
        return Verdict.INCOMPLETE
    return Verdict.ANCHORED if result.anchored else Verdict.SELF_CONSISTENT


VERDICT_LINES = {
    Verdict.BROKEN: "BROKEN: the log was altered or damaged (first broken place above)",
    Verdict.INCOMPLETE: (
        "INCOMPLETE: no sign of tampering in what is here, but records the checkpoints know of "
        "are not in this directory (see the findings above)"
    ),
    Verdict.SELF_CONSISTENT: (
        "OK, SELF-CONSISTENT ONLY: every chain is unbroken, but nothing was checked against a key "
        "or a copy held off this machine: anyone with write access to this machine could have "
        "rewritten it. Give the auditors' public key (--key) to anchor it."
    ),
    Verdict.ANCHORED: (
        "OK, ANCHORED: every chain is unbroken and matches checkpoints signed with the given key "
        "up to its last checkpoint"
    ),
}


def summarise(result: VerifyResult) -> Iterable[str]:
    """Human lines describing a verification, one per chain, then notes."""
    for key, r in result.chains.items():
        state = "BROKEN" if r.problem else "incomplete" if r.findings else "intact"
        pruned = f", pruned before {r.pruned_before}" if r.pruned_before else ""
        seqs = f"seq {r.first_seq}..{r.last_seq}" if r.records else "no records"
        stopped = " (read until the break)" if r.problem and r.records else ""
        yield (
            f"{key}: {state}: {r.records} records in {r.files} files, {seqs}{stopped}"
            f"{pruned}; {r.checkpoints} checkpoints"
        )
        if r.anchored_seq and r.records:
            rest = (
                f"; seq {r.anchored_seq + 1}..{r.last_seq}, after the last signed checkpoint, "
                "self-consistent only"
                if r.last_seq > r.anchored_seq
                else ""
            )
            yield f"  anchored: seq {r.first_seq}..{min(r.anchored_seq, r.last_seq)}{rest}"
        if r.unsigned_before_key:
            yield (
                f"  note: {r.unsigned_before_key} checkpoints were written unsigned, before the "
                "proxy had a signing key; they are compared, but anchor nothing"
            )
        for finding in r.findings:
            yield f"  finding: {finding}"
        for note in r.notes:
            yield f"  note: {note}"
    for note in result.notes:
        yield f"note: {note}"
