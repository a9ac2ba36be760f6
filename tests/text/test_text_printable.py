"""`socialguard.text`: what every human-facing output does to text the network chose."""

from __future__ import annotations

import pytest

from socialguard.text import clip, csv_cell, json_line, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("www.example.org", "www.example.org"),
        ("Zoë's café, 東京", "Zoë's café, 東京"),  # letters of any script stay as they are
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC: retitles a terminal
        ("\x1b[2J", "\\x1b[2J"),  # CSI: clears it
        ("a\rb\nc\td\x00e\x7f", "a\\x0db\\x0ac\\x09d\\x00e\\x7f"),  # CR overwrites a line
        ("\x9b2J", "\\x9b2J"),  # C1 CSI: one character on some terminals
        ("abc\u202egpj.exe", "abc\\u202egpj.exe"),  # right-to-left override
        (
            "\u2066x\u2069\u200e\u200f\u061c",
            "\\u2066x\\u2069\\u200e\\u200f\\u061c",
        ),  # isolates, marks
        ("a\u200bb\ufeffc", "a\\u200bb\\ufeffc"),  # zero-width space, BOM
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),  # line and paragraph separators
        ("\U000e0041", "\\U000e0041"),  # tag characters hide text
        ("\udcff", "\\udcff"),  # an undecodable byte (surrogateescape)
    ],
)
def test_printable_escapes_controls_bidi_and_separators(raw: str, shown: str) -> None:
    assert printable(raw) == shown


@pytest.mark.parametrize("raw", ["\x1b[2J", "a\u202eb", "plain", "\\x1b"])
def test_printable_is_idempotent(raw: str) -> None:
    assert printable(printable(raw)) == printable(raw)


def test_clip_never_cuts_inside_an_escape() -> None:
    text = "x" * 8 + "\x1b[2J"
    assert clip(text, 10) == "xxxxxxxx…"  # `\x1b` (4 columns) does not fit whole: left out
    assert clip(text, 13) == "xxxxxxxx\\x1b…"
    assert clip(text, 16) == "xxxxxxxx\\x1b[2J"


def test_clip_folds_whitespace_and_keeps_short_text() -> None:
    assert clip("  two\n\nlines  ", 40) == "two lines"


@pytest.mark.parametrize(
    ("raw", "cell"),
    [
        ('=HYPERLINK("http://evil.example/","x")', '\'=HYPERLINK("http://evil.example/","x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\\x09=1"),
        ("\r=1", "'\\x0d=1"),
        ("www.example.org", "www.example.org"),
        ("a=b", "a=b"),
    ],
)
def test_csv_cells_are_never_formulas(raw: str, cell: str) -> None:
    assert csv_cell(raw) == cell


def test_json_lines_keep_their_value_and_lose_their_raw_c1_and_bidi_characters() -> None:
    import json

    value = "a\u009b2J\u202eb\u2066c\u200bd\u2028e\ufefff café 東京"
    raw = json.dumps({"host": value}, ensure_ascii=False).encode()
    safe = json_line(raw)
    assert json.loads(safe) == {"host": value}
    assert safe == (
        b'{"host": "a\\u009b2J\\u202eb\\u2066c\\u200bd\\u2028e\\ufefff '
        + "café 東京".encode()
        + b'"}'
    )
