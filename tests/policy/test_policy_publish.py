"""What a rules change adds and loses (policy/publish.py): losses are what the proxy holds back."""

from __future__ import annotations

import pytest

from socialguard.policy.publish import PolicySummary, compare


def _summary(rules=("a", "b"), disabled=(), tests=3, social=(10, 0)) -> PolicySummary:  # type: ignore[no-untyped-def]
    return PolicySummary(
        "r.yaml", "v", "d", tuple(rules), tuple(disabled), tests, {"social": social}
    )


@pytest.mark.parametrize(
    ("new", "loss"),
    [
        (_summary(rules=("a",)), "removes rules b"),
        (_summary(rules=("a",), disabled=("b",)), "switches off rules b"),
        (_summary(tests=0), "has 0 tests where 3 were in force"),
        (_summary(social=(4, 0)), "shrinks category social from 10 to 4"),
    ],
)
def test_a_loss_is_named(new: PolicySummary, loss: str) -> None:
    assert any(loss in line for line in compare(_summary(), new).losses())


@pytest.mark.parametrize(
    "new",
    [
        _summary(rules=("a", "b", "c")),
        _summary(tests=4),
        _summary(social=(11, 1)),
        _summary(rules=("b", "a")),
    ],
)
def test_additions_and_reordering_lose_nothing(new: PolicySummary) -> None:
    assert compare(_summary(), new).losses() == []


def test_switching_a_rule_back_on_is_not_a_loss() -> None:
    change = compare(_summary(rules=("a",), disabled=("b",)), _summary())
    assert change.losses() == []
    assert change.switched_on == ("b",)


def test_summary_round_trips_through_json() -> None:
    s = _summary()
    assert PolicySummary.from_json(s.to_json()) == s
