"""Reading domain lists: the three formats, sniffing, gzip, and every unusable line reported."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from socialguard.policy.lists import (
    normalise_domain,
    parse_domain_lines,
    read_domain_list,
    sniff_format,
)

UT1 = Path(__file__).resolve().parents[3] / "shared" / "data" / "ut1"


def write(tmp_path: Path, text: str, name: str = "list.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("facebook.com", "facebook.com"),
        ("FACEBOOK.COM.", "facebook.com"),
        ("  m.Facebook.com  ", "m.facebook.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008, as browsers send it; not fass.de
        ("*.example.com", "example.com"),
        (".example.com", "example.com"),
        ("foo_bar.tripod.com", "foo_bar.tripod.com"),
        ("1.1.1.1", "1.1.1.1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("2001:db8:0:0::1", "2001:db8::1"),
    ],
)
def test_normalise_domain_gives_the_canonical_spelling(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty name"),
        ("com", "single label"),
        ("a..com", "empty label"),
        ("a.com..", "empty label"),
        ("example.com:443", "port"),
        ("https://example.com/", "URL"),
        ("exa mple.com", "whitespace"),
        ("ex*ample.com", "wildcards"),
        ("-bad.com", "not a valid host name"),
        ("bad-.com", "not a valid host name"),
        ("a" * 64 + ".com", "longer than 63"),
        ("a.0x1f", "IPv4"),
        ("1.2.3.256", "IPv4"),
    ],
)
def test_normalise_domain_rejects_what_cannot_be_a_listed_domain(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalise_domain(raw)


def test_plain_list_keeps_domains_in_file_order_and_skips_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# social networks\n\nfacebook.com\n  Instagram.COM.  # photos\ntiktok.com\n",
    )
    result = read_domain_list(path, "plain")
    assert result.domains == ["facebook.com", "instagram.com", "tiktok.com"]
    assert (result.duplicates, result.invalid, result.format) == (0, [], "plain")


def test_duplicates_are_counted_after_normalisation(tmp_path: Path) -> None:
    path = write(tmp_path, "a.com\nA.COM\na.com.\nb.com\n*.a.com\n")
    result = read_domain_list(path, "plain")
    assert result.domains == ["a.com", "b.com"]
    assert result.duplicates == 3


def test_invalid_lines_are_reported_with_line_number_text_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "good.com\nbad..com\n0.0.0.0 x.com\nhttp://u.com/p\nok.org\n")
    result = read_domain_list(path, "plain")
    assert result.domains == ["good.com", "ok.org"]
    assert [(n, text) for n, text, _ in result.invalid] == [
        (2, "bad..com"),
        (3, "0.0.0.0 x.com"),
        (4, "http://u.com/p"),
    ]
    assert "empty label" in result.invalid[0][2]
    assert "hosts file" in result.invalid[1][2]
    assert "URL" in result.invalid[2][2]


def test_hosts_file_takes_every_name_and_ignores_localhost_plumbing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "127.0.0.1 localhost\n"
        "127.0.0.1 localhost.localdomain\n"
        "255.255.255.255 broadcasthost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        "0.0.0.0 0.0.0.0\n"
        "0.0.0.0 ads.example.com\n"
        "0.0.0.0\ttrack.example.com  metrics.example.net # trackers\n"
        "127.0.0.1 ADS.example.com.\n",
        "hosts",
    )
    result = read_domain_list(path, "hosts")
    assert result.domains == ["ads.example.com", "track.example.com", "metrics.example.net"]
    assert result.duplicates == 1
    assert result.ignored == 7
    assert result.invalid == []


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("ads.example.com", "must start with an IP address"),
        ("0.0.0.0", "no names"),
        ("0.0.0.0 bad..com", "bad..com: empty label"),
    ],
)
def test_hosts_file_reports_lines_it_cannot_use(tmp_path: Path, line: str, why: str) -> None:
    result = read_domain_list(write(tmp_path, f"0.0.0.0 ok.com\n{line}\n"), "hosts")
    assert result.domains == ["ok.com"]
    assert len(result.invalid) == 1
    lineno, text, reason = result.invalid[0]
    assert (lineno, text) == (2, line)
    assert why in reason


def test_hosts_line_keeps_its_good_names_when_one_is_bad(tmp_path: Path) -> None:
    result = read_domain_list(write(tmp_path, "0.0.0.0 a.com b..com c.com\n"), "hosts")
    assert result.domains == ["a.com", "c.com"]
    assert [n for n, _, _ in result.invalid] == [1]


def test_ut1_domains_file_reads_like_one_domain_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "example.com\n1.2.3.4\nfoo_bar.tripod.com\n", "domains")
    result = read_domain_list(path)
    assert result.format == "ut1"
    assert result.domains == ["example.com", "1.2.3.4", "foo_bar.tripod.com"]


@pytest.mark.parametrize(
    ("lines", "name", "expected"),
    [
        (["# hosts", "127.0.0.1 localhost", "0.0.0.0 a.com", "0.0.0.0 b.com"], "x.txt", "hosts"),
        (["a.com", "b.com"], "domains", "ut1"),
        (["a.com", "b.com"], "social_networks.domains", "ut1"),
        (["a.com", "b.com"], "domains.gz", "ut1"),
        (["a.com", "b.com"], "social.txt", "plain"),
        ([], "empty.txt", "plain"),
    ],
)
def test_sniff_format(lines: list[str], name: str, expected: str) -> None:
    assert sniff_format(lines, name) == expected


def test_auto_reads_a_hosts_file_as_hosts(tmp_path: Path) -> None:
    path = write(tmp_path, "# blocklist\n0.0.0.0 a.com\n0.0.0.0 b.com\n")
    result = read_domain_list(path)
    assert (result.format, result.domains) == ("hosts", ["a.com", "b.com"])


def test_gzip_input_is_read_by_its_magic_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"  # no .gz suffix on purpose
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("a.com\nb.com\na.com\n")
    result = read_domain_list(path, "plain")
    assert (result.domains, result.duplicates) == (["a.com", "b.com"], 1)


def test_windows_line_endings_and_a_byte_order_mark_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbfa.com\r\nb.com\r\n")
    assert read_domain_list(path, "plain").domains == ["a.com", "b.com"]


def test_bytes_that_are_not_utf8_fail_their_line_only(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.com\nb\xff.com\nc.com\n")
    result = read_domain_list(path, "plain")
    assert result.domains == ["a.com", "c.com"]
    assert [(n, why) for n, _, why in result.invalid] == [(2, "not valid UTF-8 text")]


def test_a_last_line_without_newline_is_read(tmp_path: Path) -> None:
    assert read_domain_list(write(tmp_path, "a.com\nb.com"), "plain").domains == ["a.com", "b.com"]


def test_an_empty_file_gives_an_empty_list(tmp_path: Path) -> None:
    result = read_domain_list(write(tmp_path, ""), "auto")
    assert (result.domains, result.duplicates, result.invalid) == ([], 0, [])


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown list format 'csv'"):
        read_domain_list(write(tmp_path, "a.com\n"), "csv")


def test_a_damaged_gzip_file_raises_oserror(tmp_path: Path) -> None:
    path = tmp_path / "list.gz"
    path.write_bytes(gzip.compress(b"a.com\n" * 100)[:30])
    with pytest.raises((OSError, EOFError)):
        read_domain_list(path, "plain")


def test_long_lists_cross_block_boundaries_without_losing_or_splitting_lines(
    tmp_path: Path,
) -> None:
    # Long enough for several read blocks; a bad line and a comment sit in later blocks.
    names = [f"host{i}.example{i % 97}.com" for i in range(150_000)]
    lines = list(names)
    lines[120_000] = "bad..name.com"
    lines[140_000] = "# a comment"
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = read_domain_list(path, "plain")
    expected = [n for i, n in enumerate(names) if i not in (120_000, 140_000)]
    assert result.domains == expected
    assert [n for n, _, _ in result.invalid] == [120_001]
    assert result.lines == 150_000


def test_parse_domain_lines_takes_lines_with_or_without_newlines() -> None:
    result = parse_domain_lines(["a.com\n", "B.com\r\n", "c.com"], "plain")
    assert result.domains == ["a.com", "b.com", "c.com"]


@pytest.mark.skipif(not UT1.is_dir(), reason="shared UT1 data not present")
def test_ut1_social_networks_file_is_read_in_full() -> None:
    path = UT1 / "social_networks.domains"
    raw = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    independent = list(dict.fromkeys(line.lower().rstrip(".") for line in raw if line))
    result = read_domain_list(path)
    assert result.format == "ut1"
    assert result.invalid == []
    assert result.domains == independent
    assert result.duplicates == sum(1 for line in raw if line) - len(independent)


def test_a_line_too_long_to_hold_is_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_text("a.com\n" + "x" * (5 << 20) + "\nb.com\n" + "y" * (3 << 20), encoding="utf-8")
    result = read_domain_list(path, "plain")
    assert result.domains == ["a.com", "b.com"]
    assert [(n, why.split(" (")[0]) for n, _, why in result.invalid] == [
        (2, "longer than 1048576 characters"),
        (4, "longer than 1048576 characters"),
    ]
    assert result.lines == 4


def test_auto_looks_past_a_long_comment_header(tmp_path: Path) -> None:
    header = "".join(f"# licence and credits, line {i}\n" for i in range(400))
    path = write(tmp_path, header + "0.0.0.0 a.com\n0.0.0.0 b.com\n", "hosts")
    result = read_domain_list(path)
    assert (result.format, result.domains, result.invalid) == ("hosts", ["a.com", "b.com"], [])
