"""The uploads: section: sizes, markers, fingerprint files, compiled into the inspector's rules."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from socialguard.engine.uploads import inspect_body
from socialguard.errors import PolicyError
from socialguard.policy.uploads import (
    MarkerSpec,
    UploadsSpec,
    compile_uploads,
    parse_size,
    read_fingerprints,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10 * 1024 * 1024),
        ("512KB", 512 * 1024),
        ("512kib", 512 * 1024),
        ("1.5GB", 1536 * 1024 * 1024),
        ("100", 100),
        ("100B", 100),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten MB", "10TB", "-5MB", "MB"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="must look like 10MB"):
        parse_size(text)


def test_negative_byte_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_size(-1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x", "pattern": "(unclosed"}, "not a valid regular expression"),
        ({"name": "x", "pattern": ""}, "empty pattern"),
        ({"name": "x", "pattern": "a*"}, "matches empty text"),
        ({"name": "has space", "pattern": "a"}, "marker name"),
        ({"name": "x", "pattern": "a", "flags": "i"}, "Extra inputs"),
    ],
)
def test_bad_markers_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MarkerSpec.model_validate(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"max_body": "lots"}, "must look like 10MB"),
        ({"max_body": True}, "max_body"),
        ({"marker_window": 4}, "greater than or equal to 16"),
        ({"markers": [{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}]}, "unique"),
        ({"fingerprint": ["f.txt"]}, "Extra inputs"),
    ],
)
def test_bad_uploads_sections_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        UploadsSpec.model_validate(spec)


def test_read_fingerprints_takes_sha256sum_output(tmp_path: Path) -> None:
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    path = tmp_path / "fp.txt"
    path.write_text(f"# logos\n{a}  logos/a.png\n{b.upper()} *photos/b.jpg\n{a}  copy.png\n")
    assert read_fingerprints(path) == {a: "logos/a.png", b: "photos/b.jpg"}


def test_read_fingerprints_names_each_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "fp.txt"
    good = hashlib.sha256(b"a").hexdigest()
    path.write_text(f"{good}  ok\nnot-a-digest  x\n{good[:-1]}  short\n")
    with pytest.raises(PolicyError) as caught:
        read_fingerprints(path, "rules/fp.txt")
    assert [str(p) for p in caught.value.problems] == [
        "rules/fp.txt:2: fingerprints: expected a 64-digit SHA-256 in hex",
        "rules/fp.txt:3: fingerprints: expected a 64-digit SHA-256 in hex",
    ]


def test_compile_uploads_reads_fingerprints_relative_to_the_rules_file(tmp_path: Path) -> None:
    logo = b"district logo bytes"
    (tmp_path / "fp.txt").write_text(f"{hashlib.sha256(logo).hexdigest()}  logo.png\n")
    spec = UploadsSpec.model_validate(
        {
            "max_body": "1KB",
            "markers": [{"name": "confidential", "pattern": "confidential", "ignore_case": True}],
            "fingerprints": ["fp.txt"],
        }
    )
    rules = compile_uploads(spec, tmp_path)
    assert rules.max_body == 1024
    assert inspect_body(rules, "image/png", logo).fingerprints == ("logo.png",)
    assert inspect_body(rules, "text/plain", b"CONFIDENTIAL memo").markers == ("confidential",)


def test_a_missing_fingerprint_file_is_a_problem_naming_the_field(tmp_path: Path) -> None:
    spec = UploadsSpec.model_validate({"fingerprints": ["nope.txt"]})
    with pytest.raises(PolicyError) as caught:
        compile_uploads(spec, tmp_path, "rules")
    assert [str(p) for p in caught.value.problems] == [
        "rules/nope.txt: uploads.fingerprints[0]: cannot read: No such file or directory"
    ]


def test_no_uploads_section_compiles_to_rules_that_only_look_for_files() -> None:
    rules = compile_uploads(None, Path("."))
    assert not rules.inspects_content
    assert rules.max_body is None
