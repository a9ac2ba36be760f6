"""The streaming upload inspector: files, markers across chunks, fingerprints, bounded memory."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tracemalloc
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from itertools import pairwise

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socialguard.engine.uploads import (
    Marker,
    UploadInspector,
    UploadRules,
    inspect_body,
    is_text_type,
    multipart_boundary,
)

LOGO = bytes(range(256)) * 40  # stands in for the district's logo file
LOGO_SHA = hashlib.sha256(LOGO).hexdigest()
RULES = UploadRules(
    max_body=1_000_000,
    markers=(
        Marker("confidential", re.compile(rb"CONFIDENTIAL", re.IGNORECASE)),
        Marker("student-id", re.compile(rb"\bS\d{7}\b")),
    ),
    fingerprints={LOGO_SHA: "logos/district-logo.png"},
)


def encoded(files: dict | None = None, data: dict | None = None) -> tuple[str, bytes]:
    """A multipart body as a real HTTP client (httpx) encodes it."""
    request = httpx.Request("POST", "https://upload.example/", files=files, data=data)
    return request.headers["content-type"], request.read()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096, 1 << 20])
def test_a_fingerprinted_logo_in_a_multipart_upload_is_recognised(chunk_size: int) -> None:
    ctype, body = encoded(files={"photo": ("logo.png", LOGO, "image/png")}, data={"caption": "hi"})
    report = inspect_body(RULES, ctype, body, chunk_size)
    assert report.multipart and report.carries_files and report.is_upload
    assert [(f.content_type, f.size, f.sha256) for f in report.files] == [
        ("image/png", len(LOGO), LOGO_SHA)
    ]
    assert report.fingerprints == ("logos/district-logo.png",)
    assert report.markers == ()
    assert not report.malformed


def test_a_file_that_differs_by_one_byte_is_a_file_but_not_the_logo() -> None:
    altered = LOGO[:-1] + b"\x00"
    ctype, body = encoded(files={"photo": ("logo.png", altered, "image/png")})
    report = inspect_body(RULES, ctype, body)
    assert report.carries_files
    assert report.fingerprints == ()
    assert report.files[0].sha256 == hashlib.sha256(altered).hexdigest()


def test_every_file_part_is_hashed_like_an_independent_parser_reads_it() -> None:
    files = {
        f"f{i}": (f"n{i}.bin", os.urandom(1000 + i * 333), "application/pdf") for i in range(4)
    }
    ctype, body = encoded(files=files, data={"a": "1", "b": "two"})
    parsed = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
    )
    expected = [
        hashlib.sha256(part.get_payload(decode=True)).hexdigest()
        for part in parsed.iter_parts()
        if part.get_filename()
    ]
    report = inspect_body(RULES, ctype, body, 500)
    assert [f.sha256 for f in report.files] == expected
    assert len(expected) == 4


def test_text_form_fields_are_not_files() -> None:
    ctype, body = encoded(files={"x": (None, b"just a field")}, data={"status": "hello"})
    report = inspect_body(RULES, ctype, body)
    assert report.multipart and not report.carries_files and not report.is_upload


@pytest.mark.parametrize(
    ("ctype", "body", "found"),
    [
        ("application/x-www-form-urlencoded", b"post=this+is+CONFIDENTIAL&x=1", ("confidential",)),
        ("application/json", b'{"text": "student S1234567 grades"}', ("student-id",)),
        ("text/plain; charset=utf-8", b"confidential and S7654321", ("confidential", "student-id")),
        ("application/json", b'{"id": "S12345678"}', ()),  # eight digits is not the format
        (None, b"Confidential minutes", ("confidential",)),
    ],
)
def test_markers_are_found_in_text_bodies_by_name(
    ctype: str | None, body: bytes, found: tuple[str, ...]
) -> None:
    report = inspect_body(RULES, ctype, body, 5)
    assert report.markers == found
    assert not report.carries_files
    assert report.is_upload is bool(found)  # a marked text post is district material


def test_markers_are_not_searched_inside_binary_files() -> None:
    blob = b"\x89PNG" + b"CONFIDENTIAL" + bytes(100)
    ctype, body = encoded(files={"img": ("p.png", blob, "image/png")})
    assert inspect_body(RULES, ctype, body).markers == ()


def test_a_marker_in_a_text_file_part_is_found() -> None:
    ctype, body = encoded(files={"doc": ("notes.txt", b"roster S0000001", "text/plain")})
    report = inspect_body(RULES, ctype, body, 3)
    assert report.markers == ("student-id",)
    assert report.carries_files


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    st.sampled_from([b"CONFIDENTIAL", b"S1234567"]),
    st.integers(min_value=0, max_value=1500),
)
def test_any_chunking_finds_what_one_chunk_finds(
    cuts: list[int], needle: bytes, where: int
) -> None:
    text = b"a" * where + b" " + needle + b" " + b"b" * 300
    ctype, body = encoded(
        files={"doc": ("d.txt", text, "text/plain"), "img": ("l.png", LOGO, "image/png")}
    )
    whole = inspect_body(RULES, ctype, body, len(body) + 1)
    inspector = UploadInspector(RULES, ctype)
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    for start, end in pairwise(points):
        inspector.feed(body[start:end])
    assert inspector.finish() == whole
    assert whole.markers and whole.fingerprints == ("logos/district-logo.png",)


def test_a_raw_binary_body_is_one_file() -> None:
    report = inspect_body(RULES, "image/png", LOGO, 1000)
    assert not report.multipart
    assert report.fingerprints == ("logos/district-logo.png",)
    assert report.is_upload


def test_a_body_over_max_body_is_an_upload_even_without_files() -> None:
    rules = UploadRules(max_body=100)
    report = inspect_body(rules, "application/x-www-form-urlencoded", b"x=" + b"a" * 200)
    assert report.over_limit and report.is_upload and not report.carries_files
    assert report.findings() == ("over_limit",)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\nfile\r\n--x--\r\n"),  # no boundary parameter
        ("multipart/form-data; boundary=x", b"--x\r\ngarbage\r\n"),  # never terminated
        ("multipart/form-data; boundary=x", b"--xjunk\r\n\r\nbody\r\n--x--"),
        ("multipart/form-data; boundary=x", b"--x\r\n" + b"H: v\r\n" * 5000),  # endless headers
    ],
)
def test_a_multipart_body_that_does_not_parse_counts_as_carrying_files(
    ctype: str, body: bytes
) -> None:
    report = inspect_body(RULES, ctype, body, 64)
    assert report.malformed and report.carries_files and report.is_upload
    assert "malformed_multipart" in report.findings()


def test_past_the_inspect_limit_the_body_is_only_counted() -> None:
    rules = UploadRules(inspect_limit=1000, markers=RULES.markers, fingerprints=RULES.fingerprints)
    report = inspect_body(rules, "text/plain", b"a" * 2000 + b"CONFIDENTIAL", 100)
    assert report.size == 2012
    assert report.truncated and report.markers == ()


def test_a_multipart_body_too_long_to_inspect_counts_as_carrying_files() -> None:
    ctype, body = encoded(files={"img": ("l.png", LOGO, "image/png")})
    rules = UploadRules(inspect_limit=len(body) // 2, fingerprints=RULES.fingerprints)
    report = inspect_body(rules, ctype, body)
    assert report.truncated and report.carries_files
    assert report.fingerprints == ()  # half a file cannot be recognised


def test_no_hash_is_computed_when_no_fingerprints_are_configured() -> None:
    ctype, body = encoded(files={"img": ("l.png", LOGO, "image/png")})
    report = inspect_body(UploadRules(), ctype, body)
    assert report.carries_files and report.files[0].sha256 is None


def test_a_50_mb_upload_is_inspected_in_bounded_memory() -> None:
    boundary = b"----socialguardtest"
    head = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="f"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n--" + boundary + b"--\r\n"
    chunk = os.urandom(64 * 1024)
    chunks = 800  # 50 MiB of file data
    inspector = UploadInspector(RULES, "multipart/form-data; boundary=" + boundary.decode())
    tracemalloc.start()
    try:
        inspector.feed(head)
        for _ in range(chunks):
            inspector.feed(chunk)
        inspector.feed(tail)
        report = inspector.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.files[0].size == len(chunk) * chunks
    assert report.size == len(head) + len(chunk) * chunks + len(tail)
    assert peak < 1024 * 1024  # a couple of chunks' worth at most, never the body


@pytest.mark.parametrize(
    ("ctype", "boundary"),
    [
        (None, None),
        ("application/json", None),
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; charset=utf-8; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data; BOUNDARY=xyz", b"xyz"),
    ],
)
def test_multipart_boundary(ctype: str | None, boundary: bytes | None) -> None:
    assert multipart_boundary(ctype) == boundary


def test_multipart_without_boundary_is_refused() -> None:
    with pytest.raises(ValueError, match="boundary"):
        multipart_boundary("multipart/form-data")


@pytest.mark.parametrize(
    ("ctype", "text"),
    [
        (None, True),
        ("text/html; charset=utf-8", True),
        ("application/json", True),
        ("application/activity+json", True),
        ("application/x-www-form-urlencoded", True),
        ("image/png", False),
        ("application/octet-stream", False),
        ("application/pdf", False),
    ],
)
def test_is_text_type(ctype: str | None, text: bool) -> None:
    assert is_text_type(ctype) is text


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from([b"--x", b"\r\n--x", b"\r\n", b"--", b"\r\n\r\n", b"filename=a"]),
        ),
        max_size=30,
    ),
    st.sampled_from(
        ["multipart/form-data; boundary=x", "multipart/mixed", "text/plain", "image/png", None]
    ),
)
def test_arbitrary_bytes_never_raise_and_are_all_counted(
    pieces: list[bytes], ctype: str | None
) -> None:
    inspector = UploadInspector(RULES, ctype)
    for piece in pieces:
        inspector.feed(piece)
    report = inspector.finish()
    assert report.size == sum(map(len, pieces))
    assert sum(f.size for f in report.files) <= report.size


def compressed(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    return zlib.compress(data)  # HTTP "deflate" is the zlib format


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP"])
def test_a_compressed_upload_is_inspected_decoded(encoding: str) -> None:
    ctype, body = encoded(files={"photo": ("logo.png", LOGO, "image/png")}, data={"t": "S1234567"})
    inspector = UploadInspector(RULES, ctype, encoding)
    wire = compressed(body, encoding.lower())
    for start in range(0, len(wire), 100):
        inspector.feed(wire[start : start + 100])
    report = inspector.finish()
    assert report.size == len(wire)
    assert report.fingerprints == ("logos/district-logo.png",)
    assert report.markers == ("student-id",)
    assert not report.opaque


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("br", b"\x1b\x03\x00\xf8"),  # an encoding the inspector cannot read
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(b"CONFIDENTIAL " * 100, mtime=0)[:40]),  # stops short
    ],
)
def test_a_body_it_cannot_decode_counts_as_carrying_files(encoding: str, body: bytes) -> None:
    inspector = UploadInspector(RULES, "text/plain", encoding)
    inspector.feed(body)
    report = inspector.finish()
    assert report.opaque and report.carries_files and report.is_upload
    assert "opaque_encoding" in report.findings()


def test_a_compression_bomb_is_decoded_only_up_to_the_inspect_limit() -> None:
    rules = UploadRules(inspect_limit=4 * 1024 * 1024, markers=RULES.markers)
    bomb = gzip.compress(bytes(48 * 1024 * 1024), compresslevel=1)  # 48 MiB of zeros
    inspector = UploadInspector(rules, "text/plain", "gzip")
    tracemalloc.start()
    try:
        for start in range(0, len(bomb), 64 * 1024):
            inspector.feed(bomb[start : start + 64 * 1024])
        report = inspector.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.truncated and report.size == len(bomb)
    assert peak < 4 * 1024 * 1024
