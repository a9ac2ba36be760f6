"""The remembered, pre-encoded decision records write exactly what the event-dict path writes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from audit_helpers import lines_of, make_decision
from hypothesis import given
from hypothesis import strategies as st

from socialguard.audit import AuditLog, decision_event
from socialguard.audit.chain import encode_event
from socialguard.audit.files import list_log_files
from socialguard.audit.schema import EncodedDecisions
from socialguard.audit.verify import verify_log
from socialguard.engine.model import Action, Basis

_SHARED = EncodedDecisions()  # one cache across every example: shapes must not bleed together
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(
    user=st.none() | _TEXT,
    host=_TEXT.filter(bool),
    scheme=st.none() | st.sampled_from(["http", "https"]),
    method=st.none() | st.sampled_from(["GET", "POST"]),
    path=st.none() | _TEXT.map(lambda t: "/" + t),
    sni=st.none() | _TEXT,
    stage=st.sampled_from(["request", "connection", "websocket"]),
    ids=st.lists(st.from_regex(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", fullmatch=True), min_size=4),
    extra=st.sampled_from(
        [(), (("verdict", "pass"),), (("verdict", "inspect"), ("ech", True)), (("ech", False),)]
    ),
)
def test_the_encoded_members_equal_encoding_the_event(  # noqa: PLR0917 - hypothesis arguments
    user: str | None,
    host: str,
    scheme: str | None,
    method: str | None,
    path: str | None,
    sni: str | None,
    stage: str,
    ids: list[str],
    extra: tuple[tuple[str, object], ...],
) -> None:
    """Any user name or path (even one containing the id slot's text), first time and again."""
    decision = make_decision(host, user=user)
    encoded = EncodedDecisions()
    shape = {"stage": stage, "client": "10.0.0.5", "scheme": scheme, "method": method}
    for i, decision_id in enumerate(ids):
        # the same decision asked about again in a shape that differs in one thing
        if i % 4 == 1:
            path = None if path else "/x"
        elif i % 4 == 2:
            shape["method"] = "PUT" if shape["method"] != "PUT" else None
        elif i % 4 == 3:
            sni = (sni or "") + "s"
        facts = extra if i % 2 == 0 else ()  # the same decision with and without them
        expected = encode_event(
            decision_event(
                decision, decision_id=decision_id, path=path, sni=sni, **shape, **dict(facts)
            )
        )
        got = encoded.fields(
            decision, decision_id=decision_id, path=path, sni=sni, **shape, extra=facts
        )
        assert got == expected
        shared = _SHARED.fields(
            decision, decision_id=decision_id, path=path, sni=sni, **shape, extra=facts
        )
        assert shared == expected


@pytest.mark.parametrize("basis", [Basis.GRANT, Basis.EMERGENCY, Basis.ERROR, Basis.AMBIGUOUS])
def test_decisions_that_cannot_repeat_are_encoded_but_not_remembered(basis: Basis) -> None:
    """Each request under a grant is a new Decision: the cache must not fill with them (issue 19's
    soak grew by them), and what is written is still exactly the event's encoding."""
    encoded = EncodedDecisions()
    repeating = make_decision()
    encoded.fields(repeating, decision_id="AAAA-BBBB-0000", stage="request", client="10.0.0.5")
    for i in range(200):
        granted = make_decision(
            action=Action.ALLOW, basis=basis, override_id=f"g{i}", client_ip=f"10.0.1.{i}"
        )
        args = {"decision_id": f"AAAA-BBBB-{i:04}", "stage": "request", "client": f"10.0.1.{i}"}
        assert encoded.fields(granted, **args) == encode_event(decision_event(granted, **args))
    assert len(encoded) == 1  # only the decision the engine hands out again


def test_a_user_named_like_the_slot_does_not_move_the_id() -> None:
    decision = make_decision(user="@decision-id@")
    got = EncodedDecisions().fields(
        decision, decision_id="AAAA-BBBB-CCCC", stage="request", client="10.0.0.5"
    )
    assert '"decision_id":"AAAA-BBBB-CCCC"' in got
    assert '"user":"@decision-id@"' in got


def test_write_encoded_and_write_make_the_same_chain(tmp_path: Path) -> None:
    """Two logs at the same clock, one written each way: byte-identical files, both verify."""
    decision = make_decision()
    logs = {}
    for name in ("dict", "encoded"):
        log_dir = tmp_path / name
        log = AuditLog(
            log_dir, "n1", checkpoint_dir=tmp_path / f"cp-{name}", clock=lambda: 1_800_000_000.25
        )
        encoded = EncodedDecisions()
        for i in range(3):
            args = {"decision_id": f"AAAA-BBBB-000{i}", "stage": "request", "client": "10.0.0.5"}
            if name == "dict":
                log.write(decision_event(decision, **args))
            else:
                log.write_encoded(encoded.fields(decision, **args))
        log.close()
        assert verify_log(log_dir).ok
        (lf,) = [f for f in list_log_files(log_dir) if not f.gz]
        logs[name] = [_SALT.sub(rb'"\1":"*"', line) for line in lines_of(lf.path)]
    assert logs["dict"] == logs["encoded"]  # but for each chain's own id, and so the hashes


_SALT = re.compile(rb'"(chain|prev|h)":"[0-9a-f]+"')


@given(
    fields=st.dictionaries(_TEXT, _TEXT, max_size=4).map(encode_event),
    seq=st.integers(min_value=0, max_value=10**12),
    head=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    t=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_the_written_out_seal_equals_chain_seal(fields: str, seq: int, head: str, t: float) -> None:
    """What `ChainFileSink.msg` hands the OS is laid out, hashed and closed exactly as `chain.seal`
    would have it, and the chain head moves to that line."""
    from socialguard.audit.chain import LEAF_HASHER, seal, unseal
    from socialguard.audit.writer import ChainFileSink, _ChainState

    state = _ChainState()
    state.seq, state.head = seq, head
    sink = ChainFileSink(state, "node-é", lambda: t)
    read_end, state.fd = os.pipe()
    try:
        got_seq = sink.msg(fields)
        line = os.read(read_end, 1 << 16)
    finally:
        os.close(read_end)
        os.close(state.fd)
    text = (
        f'{{"v":1,"seq":{seq + 1},"ts":"{sink.timestamp(t)}","node":"node-é"'
        f'{fields},"prev":"{head}"}}'
    )
    sealed, h = seal(text.encode())
    assert line == sealed
    assert (got_seq, state.seq, state.head, state.bytes, state.count) == (
        seq + 1, seq + 1, h, len(line), 1,
    )  # fmt: skip
    record, stored, recomputed = unseal(line)
    assert stored == recomputed == h and record["prev"] == head
    assert LEAF_HASHER.digest() == hashlib.sha256(b"\x00").digest()  # copied, never fed
