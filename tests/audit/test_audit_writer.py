"""The decision log writer against real files: records, chain, rotation, gzip, restart,
checkpoints."""

from __future__ import annotations

import itertools
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
from audit_helpers import DENVER, Clock, event, lines_of, make_decision

from socialguard.audit import AuditLog, admin_event, decision_event, new_decision_id
from socialguard.audit.chain import GENESIS, unseal
from socialguard.audit.checkpoints import generate_keypair, load_public_key, signature_valid
from socialguard.audit.files import list_log_files
from socialguard.audit.verify import verify_log
from socialguard.engine.model import Action, Basis
from socialguard.errors import AuditError


def records(log_dir: Path) -> list[dict]:
    out = []
    for lf in sorted(list_log_files(log_dir), key=lambda f: f.index):
        for raw in lines_of(lf.path):
            r, stored, computed = unseal(raw)
            assert stored == computed
            r["h"] = stored
            out.append(r)
    return out


def test_a_decision_record_carries_the_fields_the_issue_lists(tmp_path: Path, open_log) -> None:
    log = open_log()
    d = make_decision(
        "www.facebook.com", user="jdoe", device="lap-7", groups=frozenset({"staff", "teachers"})
    )
    did = new_decision_id()
    seq = log.write(
        decision_event(
            d,
            decision_id=did,
            stage="request",
            client="10.0.0.5",
            scheme="https",
            method="POST",
            sni="cdn.example.net",
        )
    )
    log.close()
    r = next(r for r in records(tmp_path / "log") if r["seq"] == seq)
    assert r["type"] == "decision"
    assert r["ts"] == "2026-11-24T17:00:00.000Z"
    assert r["node"] == "n1-w0"
    assert r["decision_id"] == did
    assert (r["client"], r["user"], r["device"], r["groups"]) == (
        "10.0.0.5",
        "jdoe",
        "lap-7",
        ["staff", "teachers"],
    )
    assert (r["host"], r["sni"], r["scheme"], r["method"]) == (
        "www.facebook.com",
        "cdn.example.net",
        "https",
        "POST",
    )
    assert (r["category"], r["rule"], r["action"], r["basis"]) == (
        "social",
        "staff-social-school-hours",
        "block",
        "rule",
    )
    assert r["policy_version"] == "pv-test-1"
    assert r["override_id"] is None
    assert r["v"] == 1
    assert "path" not in r and r["erased"] == ["path"]


def test_sni_equal_to_host_is_not_repeated() -> None:
    d = make_decision("www.facebook.com")
    e = decision_event(
        d, decision_id="X", stage="request", client="10.0.0.5", sni="www.facebook.com"
    )
    assert "sni" not in e


def test_path_is_logged_without_its_query_and_the_erasure_is_recorded() -> None:
    d = make_decision("www.facebook.com")
    e = decision_event(
        d, decision_id="X", stage="request", client="10.0.0.5", path="/groups/123?token=secret#frag"
    )
    assert e["path"] == "/groups/123"
    assert e["erased"] == ["query"]
    assert "secret" not in json.dumps(e)


def test_request_content_passed_as_extra_is_erased_not_logged() -> None:
    d = make_decision("www.facebook.com")
    e = decision_event(
        d,
        decision_id="X",
        stage="request",
        client="10.0.0.5",
        cookies="sid=abc",
        authorization="Basic Zm9v",
        body=b"x",
        mismatch=True,
    )
    assert e["mismatch"] is True
    for key in ("cookies", "authorization", "body"):
        assert key not in e
    assert set(e["erased"]) >= {"cookies", "authorization", "body"}


def test_long_paths_are_cut_and_marked_masked() -> None:
    d = make_decision("www.facebook.com")
    e = decision_event(
        d, decision_id="X", stage="request", client="10.0.0.5", path="/" + "a" * 1000
    )
    assert len(e["path"]) == 256
    assert e["masked"] == ["path"]


def test_decision_ids_are_short_readable_and_distinct() -> None:
    ids = {new_decision_id() for _ in range(2000)}
    assert len(ids) == 2000
    for i in list(ids)[:50]:
        assert len(i) == 14 and i.count("-") == 2
        assert not set(i) & set("ILOU")


def test_write_returns_contiguous_seqs_and_links_each_record_to_the_previous(
    tmp_path: Path, open_log
) -> None:
    log = open_log()
    seqs = [log.write(event(f"h{i}.example")) for i in range(50)]
    assert seqs == list(range(2, 52))  # seq 1 is the file_open record
    log.close()
    rs = records(tmp_path / "log")
    assert [r["seq"] for r in rs] == list(range(1, len(rs) + 1))
    assert rs[0]["prev"] == GENESIS
    for a, b in itertools.pairwise(rs):
        assert b["prev"] == a["h"]


def test_an_event_cannot_set_the_chain_fields(tmp_path: Path, open_log) -> None:
    log = open_log()
    seq = log.write({**event(), "seq": 999, "prev": "f" * 64, "h": "0" * 64, "node": "forged"})
    log.close()
    r = next(r for r in records(tmp_path / "log") if r["seq"] == seq)
    assert seq == 2 and r["node"] == "n1-w0" and r["prev"] != "f" * 64


def test_write_hands_the_line_to_the_os_before_returning(tmp_path: Path, open_log) -> None:
    log = open_log(fsync_interval_s=3600)
    seq = log.write(event("instagram.com"))
    # Read the file from outside the writer while it is still open and nothing was fsynced or
    # closed.
    data = log.current_file.read_bytes()
    last = unseal(data.splitlines()[-1])[0]
    assert last["seq"] == seq and last["host"] == "instagram.com"


def test_admin_events_join_the_chain(tmp_path: Path, open_log) -> None:
    log = open_log()
    seq = log.write(
        admin_event(
            "grant_added",
            by="principal",
            source="cli@admin1",
            target="G-42",
            reason="yearbook photos",
            details={"who": "user:asmith"},
        )
    )
    log.close()
    r = next(r for r in records(tmp_path / "log") if r["seq"] == seq)
    assert (r["type"], r["action"], r["by"], r["target"], r["reason"]) == (
        "admin",
        "grant_added",
        "principal",
        "G-42",
        "yearbook photos",
    )


def test_rotation_by_size_closes_with_a_count_and_opens_linked(tmp_path: Path, open_log) -> None:
    log = open_log(max_bytes=4096, compress=False)
    for i in range(60):
        log.write(event(f"h{i}.example"))
    log.close()
    files = sorted(list_log_files(tmp_path / "log"), key=lambda f: f.index)
    assert len(files) >= 3
    prev_last = None
    for lf in files:
        lines = [unseal(x) for x in lines_of(lf.path)]
        first, last = lines[0][0], lines[-1][0]
        assert first["type"] == "file_open" and first["file"] == lf.path.name
        assert last["type"] == "file_close" and last["file"] == lf.path.name
        assert last["count"] == len(lines)
        if prev_last is not None:
            assert first["prev"] == prev_last[1] and first["seq"] == prev_last[0]["seq"] + 1
        prev_last = lines[-1]
    assert verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints").ok


def test_rotation_happens_at_midnight_in_the_district_zone(
    tmp_path: Path, open_log, clock: Clock
) -> None:
    clock.set(datetime(2026, 11, 24, 23, 59, 58, tzinfo=DENVER))  # 06:59:58 UTC on the 25th
    log = open_log(compress=False)
    log.write(event("before.example"))
    clock.set(datetime(2026, 11, 24, 23, 59, 59, 999000, tzinfo=DENVER))
    log.write(event("last.example"))
    clock.set(datetime(2026, 11, 25, 0, 0, 0, 1000, tzinfo=DENVER))
    log.write(event("after.example"))
    log.close()
    files = sorted(list_log_files(tmp_path / "log"), key=lambda f: f.index)
    assert [f.date for f in files] == ["20261124", "20261125"]
    day1 = [unseal(x)[0] for x in lines_of(files[0].path)]
    day2 = [unseal(x)[0] for x in lines_of(files[1].path)]
    assert [r.get("host") for r in day1 if r["type"] == "decision"] == [
        "before.example",
        "last.example",
    ]
    assert day1[-1]["type"] == "file_close" and day1[-1]["reason"] == "day"
    assert [r.get("host") for r in day2 if r["type"] == "decision"] == ["after.example"]
    assert verify_log(tmp_path / "log").ok


def test_a_utc_midnight_is_not_a_district_midnight(tmp_path: Path, open_log, clock: Clock) -> None:
    clock.set(datetime(2026, 11, 24, 16, 59, 0, tzinfo=DENVER))  # 23:59 UTC
    log = open_log(compress=False)
    log.write(event())
    clock.set(datetime(2026, 11, 24, 17, 1, 0, tzinfo=DENVER))  # 00:01 UTC next day
    log.write(event())
    log.close()
    assert len(list_log_files(tmp_path / "log")) == 1


def test_closed_files_are_gzipped_and_still_verify(tmp_path: Path, open_log) -> None:
    log = open_log(max_bytes=4096)
    for i in range(60):
        log.write(event(f"h{i}.example"))
    log.close()
    files = list_log_files(tmp_path / "log")
    gz = [f for f in files if f.gz]
    assert len(gz) >= 2
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "log").iterdir())
    assert all(lines_of(f.path)[0].startswith(b'{"v":1') for f in gz)
    assert verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints").ok


def test_a_restart_continues_the_chain(tmp_path: Path, open_log) -> None:
    log = open_log()
    log.write(event())
    log.close()
    log2 = open_log()
    seq = log2.write(event())
    log2.close()
    rs = records(tmp_path / "log")
    assert seq == rs[-2]["seq"] and [r["seq"] for r in rs] == list(range(1, len(rs) + 1))
    opens = [r for r in rs if r["type"] == "file_open"]
    assert len(opens) == 2 and opens[1]["prev_file"] == opens[0]["file"]
    assert "recovered" not in opens[1]
    assert verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints").ok


def test_after_a_crash_the_next_file_says_recovered_and_a_torn_line_is_cut(
    tmp_path: Path, open_log
) -> None:
    log = open_log(compress=False)
    for _ in range(5):
        log.write(event())
    path = log.current_file
    # Simulate the process dying: no file_close; and a write that tore mid-line.
    os.close(log._state.fd)
    log._closed = True
    log._stop.set()
    os.close(log._lock_fd)
    torn = b'{"v":1,"seq":7,"ts":"2026-'
    with open(path, "ab") as f:
        f.write(torn)
    log2 = open_log(compress=False)
    seq = log2.write(event())
    log2.close()
    assert path.read_bytes().endswith(b"}\n")
    rs = records(tmp_path / "log")
    opens = [r for r in rs if r["type"] == "file_open"]
    assert opens[1]["recovered"] is True and opens[1]["torn_bytes"] == len(torn)
    assert seq == 8  # 1 open + 5 decisions, then the new file's open (7), then this one
    assert verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints").ok


def test_a_second_writer_for_the_same_node_is_refused(open_log) -> None:
    open_log()
    with pytest.raises(AuditError, match="already writing the chain of node 'n1-w0'"):
        open_log()


def test_two_nodes_write_two_chains_in_one_directory(tmp_path: Path, open_log) -> None:
    a, b = open_log("n1-w0"), open_log("n1-w1")
    for _ in range(3):
        a.write(event())
        b.write(event())
    a.close()
    b.close()
    result = verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints")
    assert result.ok and set(result.chains) == {"n1-w0", "n1-w1"}


def test_checkpoints_are_signed_with_the_key_and_go_to_the_second_sink(
    tmp_path: Path, open_log
) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    log = open_log(signing_key=tmp_path / "k.key")
    log.write(event())
    head = log.head
    cp = log.checkpoint("test")
    log.close()
    assert cp is not None and (cp["seq"], cp["head"]) == (2, head)
    stored = [
        json.loads(x)
        for x in (tmp_path / "checkpoints" / "checkpoints-n1-w0.jsonl").read_text().splitlines()
    ]
    assert [c["reason"] for c in stored] == ["test", "shutdown"]
    pub = load_public_key(tmp_path / "k.pub")
    assert all(signature_valid(c, pub) for c in stored)
    forged = {**stored[0], "seq": stored[0]["seq"] + 1}
    assert not signature_valid(forged, pub)


def test_an_idle_writer_checkpoints_its_head(tmp_path: Path, open_log, clock: Clock) -> None:
    log = open_log(idle_checkpoint_s=5, fsync_interval_s=0.02)
    seq = log.write(event())
    clock.advance(6)  # idle long enough by the writer's clock; the background thread notices
    cp_file = tmp_path / "checkpoints" / "checkpoints-n1-w0.jsonl"
    for _ in range(500):  # bounded wait for the background thread (not a timing assertion)
        if cp_file.exists() and cp_file.read_text():
            break
        import time

        time.sleep(0.01)
    cp = json.loads(cp_file.read_text().splitlines()[0])
    assert (cp["seq"], cp["reason"]) == (seq, "idle")


def test_keygen_private_key_is_mode_0600_and_never_overwritten(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    with pytest.raises(AuditError, match="already exists"):
        generate_keypair(tmp_path / "k.key", tmp_path / "other.pub")


@pytest.mark.parametrize("bad", [{"node": ""}, {"max_bytes": 10}])
def test_bad_writer_settings_are_refused(tmp_path: Path, bad: dict) -> None:
    kw = {"node": "n1", "max_bytes": 1 << 20} | bad
    with pytest.raises(AuditError):
        AuditLog(tmp_path / "log", kw.pop("node"), **kw)


def test_grant_basis_records_the_override_id(tmp_path: Path, open_log) -> None:
    log = open_log()
    seq = log.write(
        event("instagram.com", action=Action.ALLOW, basis=Basis.GRANT, override_id="G-1")
    )
    log.close()
    r = next(r for r in records(tmp_path / "log") if r["seq"] == seq)
    assert (r["action"], r["basis"], r["override_id"]) == ("allow", "grant", "G-1")


def test_the_writer_signs_with_the_key_it_is_given_and_guesses_none_from_the_log_dir(
    tmp_path: Path, open_log
) -> None:
    """Where the key lives is `paths.audit_key`'s one rule (the commands resolve it); a key lying
    beside the log directory is not picked up by accident."""
    generate_keypair(tmp_path / "audit-signing.key", tmp_path / "audit-signing.pub")
    log = open_log()
    log.write(event())
    log.close()
    cp_file = tmp_path / "checkpoints" / "checkpoints-n1-w0.jsonl"
    assert json.loads(cp_file.read_text().splitlines()[-1])["sig"] is None
    log = open_log(signing_key=tmp_path / "audit-signing.key")
    log.write(event())
    log.close()
    cp = json.loads(cp_file.read_text().splitlines()[-1])
    assert signature_valid(cp, load_public_key(tmp_path / "audit-signing.pub"))


def test_tail_follow_reads_through_rotation_and_compression_without_loss_or_repeats(
    tmp_path: Path, open_log
) -> None:
    from socialguard.audit.tail import follow_records, last_records

    log = open_log(max_bytes=4096)
    for i in range(5):
        log.write(event(f"old{i}.example"))
    recent, offsets = last_records(tmp_path / "log", 2)
    assert [r["host"] for r in recent] == ["old3.example", "old4.example"]
    for i in range(40):  # several rotations; closed files get gzipped
        log.write(event(f"new{i}.example"))
    log.close()
    assert any(f.gz for f in list_log_files(tmp_path / "log"))
    followed = list(follow_records(tmp_path / "log", offsets, interval_s=0, polls=1))
    assert [r["host"] for r in followed] == [f"new{i}.example" for i in range(40)]


def test_an_admin_event_url_loses_its_query_string() -> None:
    e = admin_event(
        "emergency_self_declared",
        by="jdoe",
        source="10.0.0.5",
        target="E-1",
        reason="my child is ill",
        details={"url": "https://www.facebook.com/messages?thread=42&token=x"},
    )
    assert e["details"]["url"] == "https://www.facebook.com/messages"
    assert e["erased"] == ["details.url.query"]


@pytest.mark.parametrize("external", [True, False], ids=["system-gzip", "in-process"])
def test_compress_round_trips_and_leaves_no_temporary_file(tmp_path: Path, external: bool) -> None:
    from socialguard.audit.files import compress

    plain = tmp_path / "decisions-n1-20261124-000001.jsonl"
    data = b"".join(b'{"seq":%d,"x":"%s"}\n' % (i, b"y" * (i % 50)) for i in range(20_000))
    plain.write_bytes(data)
    gz = compress(plain, external=external)
    assert gz.name == plain.name + ".gz" and not plain.exists()
    assert lines_of(gz) == data.splitlines(keepends=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [gz.name]


@pytest.mark.parametrize(
    ("stage", "erased"), [("request", ["path"]), ("connection", None), ("tcp", None)]
)
def test_path_erasure_is_recorded_only_where_a_path_existed(
    stage: str, erased: list | None
) -> None:
    e = decision_event(make_decision(), decision_id="X", stage=stage, client="10.0.0.5")
    assert e.get("erased") == erased


def test_checkpoints_also_go_to_syslog_when_asked(tmp_path: Path, open_log) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        log = open_log(syslog_address=sink.getsockname())
        log.write(event())
        cp = log.checkpoint("test")
        datagram = sink.recv(65536).decode()
        log.close()
    assert cp is not None
    assert "socialguard-audit: " in datagram
    sent = json.loads(datagram.split("socialguard-audit: ", 1)[1].rstrip("\x00"))
    assert (sent["seq"], sent["head"], sent["reason"]) == (cp["seq"], cp["head"], "test")


def test_a_refused_start_releases_the_chain_for_a_corrected_one(tmp_path: Path, open_log) -> None:
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(AuditError, match=r"bad\.key: cannot read the signing key"):
        open_log(signing_key=tmp_path / "bad.key")
    log = open_log()  # the same node again: not refused as "already writing"
    assert log.write(event()) == 2
