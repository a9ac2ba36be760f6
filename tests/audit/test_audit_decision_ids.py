"""Decision reference ids, made in batches from the OS's randomness: their shape, their spread,
and no repeats across a fork."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from socialguard.audit.schema import _ALPHABET, new_decision_id


def test_ids_are_three_groups_of_four_crockford_digits() -> None:
    ids = [new_decision_id() for _ in range(3000)]  # more than one batch
    assert len(set(ids)) == len(ids)
    for i in ids:
        groups = i.split("-")
        assert [len(g) for g in groups] == [4, 4, 4]
        assert set("".join(groups)) <= set(_ALPHABET)


def test_every_digit_turns_up_in_every_position() -> None:
    ids = [new_decision_id().replace("-", "") for _ in range(4000)]
    for pos in range(12):
        seen = Counter(i[pos] for i in ids)
        assert set(seen) == set(_ALPHABET), pos  # 4000 draws of 32 digits: all appear
        assert max(seen.values()) < 4 * min(seen.values()), pos  # and none crowds the others


FORK_SCRIPT = """
import os
from socialguard.audit.schema import new_decision_id
new_decision_id()  # the pool now holds the ids the parent will hand out next
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, ",".join(new_decision_id() for _ in range(5)).encode())
    os._exit(0)
os.close(write)
child = os.read(read, 4096).decode().split(",")
os.waitpid(pid, 0)
print(",".join(child))
print(",".join(new_decision_id() for _ in range(5)))
"""


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    # In a fresh interpreter: forking pytest's own (threaded) process is unsafe.
    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    child, parent = set(out[0].split(",")), set(out[1].split(","))
    assert len(child) == 5 and len(parent) == 5
    assert not child & parent
