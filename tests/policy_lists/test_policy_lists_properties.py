"""Properties of list normalisation: round trips, agreement with the engine, bulk = line by line."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socialguard.engine.hosts import normalise_host
from socialguard.policy.lists import normalise_domain, parse_domain_lines

_INNER = "abcdefghijklmnopqrstuvwxyz0123456789_-"
_EDGE = "abcdefghijklmnopqrstuvwxyz0123456789_"

label = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(_EDGE),
    st.text(_INNER, max_size=8),
    st.sampled_from(_EDGE),
) | st.sampled_from(_EDGE)
# A last label with a letter that cannot be read as hex: what a real TLD looks like.
tld = st.builds(
    lambda a, b: a + b, st.sampled_from("ghijklmnopqrstuvwxyz"), st.text(_EDGE, max_size=4)
)
canonical_name = st.builds(
    lambda labels, last: ".".join([*labels, last]), st.lists(label, min_size=1, max_size=4), tld
)


def spell_differently(name: str, flips: list[bool], dot: bool, prefix: str) -> str:
    flips = flips + [False] * len(name)
    cased = "".join(c.upper() if f else c for c, f in zip(name, flips, strict=False))
    return prefix + cased + ("." if dot else "")


@given(
    canonical_name,
    st.lists(st.booleans(), max_size=40),
    st.booleans(),
    st.sampled_from(["", "*.", ".", "  "]),
)
def test_any_spelling_of_a_name_normalises_to_its_canonical_form(
    name: str, flips: list[bool], dot: bool, prefix: str
) -> None:
    assert normalise_domain(spell_differently(name, flips, dot, prefix)) == name


@given(st.text("abcxyz019.-_:[]ÄöüßéЖ ", max_size=24))
def test_whatever_the_list_reader_accepts_the_engine_spells_the_same_way(raw: str) -> None:
    try:
        listed = normalise_domain(raw)
    except ValueError:
        return
    assert normalise_host(listed) == listed
    if not raw.strip().startswith(("*.", ".")):  # the list-only spellings of "and below"
        assert normalise_host(raw) == listed


@given(st.text("abcxyz019.-_ÄöüßéЖ", min_size=1, max_size=20))
def test_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalise_domain(raw)
    except ValueError:
        return
    assert normalise_domain(once) == once
    assert once.isascii()


line = st.one_of(
    canonical_name,
    canonical_name.map(str.upper),
    canonical_name.map(lambda n: n + "."),
    st.text("ab1.-_ü*#: ", max_size=14),
    st.just(""),
    st.just("# comment"),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=40))
def test_the_bulk_reader_agrees_with_normalising_line_by_line(lines: list[str]) -> None:
    expected: list[str] = []
    bad: list[int] = []
    for number, text in enumerate(lines, 1):
        body = text.split("#", 1)[0].strip()
        if not body:
            continue
        try:
            if len(body.split()) > 1:
                raise ValueError("two words")
            expected.append(normalise_domain(body))
        except ValueError:
            bad.append(number)
    result = parse_domain_lines(lines, "plain")
    assert result.domains == list(dict.fromkeys(expected))
    assert result.duplicates == len(expected) - len(set(expected))
    assert [n for n, _, _ in result.invalid] == bad
