"""Whatever the rules file holds, the loader answers with a policy or a PolicyError, no crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from socialguard.errors import PolicyError
from socialguard.policy import load_policy

DATA = Path(__file__).with_name("data")
EXAMPLE = (DATA / "issue_example.yaml").read_text(encoding="utf-8")
LINES = EXAMPLE.splitlines()


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(text, encoding="utf-8")
        (Path(tmp) / "lists").mkdir()
        (Path(tmp) / "lists" / "social.txt").write_text("twitter.com\n", encoding="utf-8")
        try:
            load_policy(path)
        except PolicyError as e:
            assert e.problems
            assert all(p.file == str(path) or p.file.startswith(tmp) for p in e.problems)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _load(text)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, len(LINES) - 1),
    st.sampled_from(
        ["", "  ", "x", ":", "- ", "[", "2026-13-01", "no", "7:30", "!!python/none", "&a *a"]
    ),
    st.integers(0, 40),
)
def test_one_line_damaged(index: int, insert: str, column: int) -> None:
    lines = list(LINES)
    line = lines[index]
    lines[index] = line[:column] + insert + line[column:]
    _load("\n".join(lines) + "\n")
