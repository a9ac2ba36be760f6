"""YAML aliases are refused where they stand: a file costs memory in proportion to its size."""

from __future__ import annotations

from socialguard.policy.yamlpos import load_located


def test_an_alias_is_a_located_error() -> None:
    located, problems = load_located("a: &x [1, 2]\nb: *x\n", "f.yaml")
    assert located is None
    [problem] = problems
    assert (problem.file, problem.line) == ("f.yaml", 2)
    assert "aliases (*x) are not allowed" in problem.message


def test_an_alias_inside_a_merge_key_is_refused_too() -> None:
    located, problems = load_located("base: &b {a: 1}\nc:\n  <<: *b\n", "f.yaml")
    assert located is None and problems[0].line == 3


def test_an_anchor_alone_and_an_inline_merge_still_load() -> None:
    located, problems = load_located("a: &x 1\nc:\n  <<: {k: v}\n", "f.yaml")
    assert not problems and located is not None
    assert located.data == {"a": 1, "c": {"k": "v"}}
