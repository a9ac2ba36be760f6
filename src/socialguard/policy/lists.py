"""Domain list files: one domain a line, hosts files, and UT1/squidGuard `domains` files.

A district's categories include lists that nobody on the district's staff wrote (UT1, ad-block hosts
files, a vendor's export), so the reader is forgiving about layout and strict about content: every
entry is normalised exactly as the engine normalises a request's host (lower case, no trailing dot,
IDNA to punycode), duplicates are dropped, and every line it cannot use is reported with its line
number and why, never silently skipped. Lists run to a million lines, so the common case (an ASCII
name already in canonical form) costs one regular-expression match and one set lookup.

Pure: no clock, no network, no mitmproxy. Reads the one file it is given, streaming, gzip or not.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal

from socialguard.engine.hosts import normalise_host

__all__ = [
    "FORMATS",
    "DomainListResult",
    "ListFormat",
    "normalise_domain",
    "parse_domain_lines",
    "read_domain_list",
    "sniff_format",
]

ListFormat = Literal["plain", "hosts", "ut1"]
FORMATS: Final = ("auto", "plain", "hosts", "ut1")

# One DNS label: letters, digits, hyphen, and underscore (real lists carry `foo_bar.tripod.com`,
# and browsers resolve such names, so refusing them would leave holes); no leading or trailing
# hyphen. Possessive quantifiers: no backtracking, which matters at a million lines.
_LABEL = r"[a-z0-9_]++(?:-++[a-z0-9_]++)*+"
# At least two labels (a one-label entry such as `com` would match a whole TLD), and a last label
# with a letter in it that is not hex (the engine reads `1.2.3.4` and `a.0x1f` as IPv4). Label
# and name lengths are checked separately: a length look-ahead would double the pattern's cost.
_NAME = rf"(?:{_LABEL}\.)++(?=[0-9-]*+[a-z_])(?!0x[0-9a-f]*+$){_LABEL}"
_CANONICAL = re.compile(_NAME)
# A run of good lines, each with its newline: one match call validates a whole block of them.
_NAME_RUN = re.compile(rf"(?:{_NAME}\n)*+")
_HOSTS_ADDRESS = r"(?:0\.0\.0\.0|127\.0\.0\.1)[ \t]++"
_HOSTS_RUN = re.compile(rf"(?:{_HOSTS_ADDRESS}{_NAME}\n)*+")
_HOSTS_PREFIX = re.compile(rf"^{_HOSTS_ADDRESS}", re.MULTILINE)
_MAX_NAME = 253
_MAX_LABEL = 63
_BATCH_LINES = 65_536
_CHUNK_CHARS = 1 << 21
_MAX_LINE_CHARS = 1 << 20  # memory bound for a file without newlines

# Names a hosts file maps to itself; they are the file's plumbing, not entries.
_HOSTS_PLUMBING: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)
_HOSTS_PLUMBING_DOTTED = "localhost.localdomain"  # the one plumbing name the bulk check passes
_SNIFF_LINES = 50
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class DomainListResult:
    """What a list file held: the usable domains in file order, and an account of the rest.

    `invalid` holds (line number, the line's text, why) so that `rules import` and the loader can
    point IT at the exact line. `ignored` counts hosts-file plumbing (localhost and friends).
    """

    domains: list[str]
    duplicates: int
    invalid: list[tuple[int, str, str]]
    format: str
    ignored: int = 0
    lines: int = field(default=0)


def normalise_domain(raw: str) -> str:
    """The canonical spelling of a listed domain, the one the engine's suffix lookup uses.

    Lower case, no trailing dot, Unicode labels in punycode as browsers encode them (UTS #46:
    `bücher.example` becomes `xn--bcher-kva.example`, `faß.de` `xn--fa-hia.de`), IP literals in
    their standard form. A leading `*.` or `.` (wildcard
    and squid spellings of "this domain and below") is dropped, since a listed domain always
    matches its subdomains. Raises ValueError saying why a name is unusable.
    """
    name = raw.strip().lower()
    if name.startswith("*."):
        name = name[2:]
    elif name.startswith("."):
        name = name[1:]
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty name")
    if _CANONICAL.fullmatch(name) and _lengths_ok(name):
        return name
    return _normalise_slow(name)


def _normalise_slow(name: str) -> str:
    """Everything the fast path refused: IP literals, Unicode names, and the truly invalid.

    The list-specific refusals come first, with messages that tell IT what to fix in the file;
    the rest is the engine's own normalisation, so a listed name and a request's host can never
    be spelled two ways.
    """
    if "://" in name or "/" in name:
        raise ValueError("a URL or path, not a domain name")
    if any("\udc80" <= c <= "\udcff" for c in name):
        raise ValueError("not valid UTF-8 text")
    if any(c.isspace() for c in name):
        raise ValueError("contains whitespace")
    if "*" in name:
        raise ValueError("wildcards are allowed only as a leading '*.'")
    if name.count(":") == 1 and not name.startswith("["):
        raise ValueError("has a port; list the name only")
    if "]:" in name:
        raise ValueError("has a port; list the address only")
    if ".." in name or name.endswith("."):
        raise ValueError("empty label")
    if ":" not in name and max(map(len, name.split("."))) > _MAX_LABEL:
        raise ValueError(f"a label is longer than {_MAX_LABEL} characters")
    host = normalise_host(name)
    if "." not in host and ":" not in host:
        raise ValueError("a single label (a top-level domain would match everything under it)")
    return host


def sniff_format(first_lines: Iterable[str], name: str = "") -> ListFormat:
    """Guess a list's format from its first meaningful lines (and, for UT1, its file name).

    A hosts file starts its lines with an IP address followed by names; UT1 category files are
    called `domains`; anything else is read as one domain per line.
    """
    seen = 0
    hosts_like = 0
    for line in first_lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        seen += 1
        parts = text.split()
        if len(parts) >= 2 and _is_ip(parts[0]):
            hosts_like += 1
        if seen >= _SNIFF_LINES:
            break
    if seen and hosts_like * 2 > seen:
        return "hosts"
    base = name.lower().removesuffix(".gz")
    if base == "domains" or base.endswith(".domains") or base.endswith("/domains"):
        return "ut1"
    return "plain"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_domain_lines(lines: Iterable[str], fmt: ListFormat) -> DomainListResult:
    """Parse an already-opened list (iterable of lines, newlines optional) in a known format."""
    parser = _ListParser(fmt)
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= _BATCH_LINES:
            parser.feed("\n".join(batch))
            batch = []
    if batch:
        parser.feed("\n".join(batch))
    return parser.result()


class _ListParser:
    """Accumulates a list fed in blocks of whole lines.

    Each block is validated in bulk: one regular-expression match runs over every line that is
    already a canonical name, stopping only at the rare lines that are not (comments, Unicode,
    trailing dots, IPs, mistakes), which Python then reads one by one. This is what keeps
    a million-line list well inside the loader's time budget.
    """

    def __init__(self, fmt: ListFormat) -> None:
        self.fmt: ListFormat = fmt
        self.names: list[str] = []
        self.invalid: list[tuple[int, str, str]] = []
        self.ignored = 0
        self.lines = 0

    def feed(self, text: str) -> None:
        """Take a block of whole lines joined by newlines (no trailing partial line)."""
        low = text.lower()
        if self.fmt == "hosts":
            bad = _refused_lines(low, _HOSTS_RUN)
            candidates = _HOSTS_PREFIX.sub("", low).split("\n")
        else:
            bad = _refused_lines(low, _NAME_RUN)
            candidates = low.split("\n")
        first = self.lines + 1
        self.lines += len(candidates)
        if max(map(len, candidates)) > _MAX_LABEL:
            bad.update(
                i
                for i, n in enumerate(map(len, candidates))
                if n > _MAX_LABEL and not _lengths_ok(candidates[i])
            )
        names = self._sift(text, candidates, sorted(bad), first) if bad else candidates
        if self.fmt == "hosts" and _HOSTS_PLUMBING_DOTTED in names:
            self.ignored += names.count(_HOSTS_PLUMBING_DOTTED)
            names = [n for n in names if n != _HOSTS_PLUMBING_DOTTED]
        self.names.extend(names)

    def _sift(self, text: str, candidates: list[str], bad: list[int], first: int) -> list[str]:
        """Re-read, slowly and thoroughly, the lines the bulk check refused or could not judge."""
        originals = text.split("\n")
        names: list[str] = []
        done = 0
        for i in bad:
            names.extend(candidates[done:i])
            found, skipped, problem = _parse_line(originals[i], self.fmt)
            self.ignored += skipped
            if problem is not None:
                self.invalid.append((first + i, originals[i].strip(), problem))
            names.extend(found)
            done = i + 1
        names.extend(candidates[done:])
        return names

    def too_long(self, start: str) -> None:
        """Account for a line longer than any list line can be (a binary file, a minified blob)."""
        self.lines += 1
        why = f"longer than {_MAX_LINE_CHARS} characters (is this a list file?)"
        self.invalid.append((self.lines, start[:80], why))

    def result(self) -> DomainListResult:
        """Deduplicate (first occurrence wins, file order kept) and account for every line."""
        blanks = self.names.count("")
        seen = dict.fromkeys(self.names)
        seen.pop("", None)
        return DomainListResult(
            domains=list(seen),
            duplicates=len(self.names) - blanks - len(seen),
            invalid=self.invalid,
            format=self.fmt,
            ignored=self.ignored,
            lines=self.lines,
        )


def _refused_lines(block: str, run: re.Pattern[str]) -> set[int]:
    """Indexes of the lines of `block` that are not already canonical.

    `run` matches as many good lines as it can from a position; where it stops, a line it
    refused begins. So a block costs one match call, plus one per refused line.
    """
    text = block + "\n"
    end = len(text)
    refused: set[int] = set()
    pos = line = 0
    while True:
        stop = run.match(text, pos).end()  # type: ignore[union-attr]  # `*+` always matches
        line += text.count("\n", pos, stop)
        if stop >= end:
            return refused
        refused.add(line)
        pos = text.index("\n", stop) + 1
        line += 1


def _lengths_ok(name: str) -> bool:
    return len(name) <= _MAX_NAME and max(map(len, name.split("."))) <= _MAX_LABEL


def _parse_line(line: str, fmt: ListFormat) -> tuple[list[str], int, str | None]:
    """One line, the slow and thorough way: (its domains, plumbing names skipped, why not)."""
    text = line.strip()
    if not text or text[0] == "#":
        return [], 0, None
    if "#" in text:
        text = text.split("#", 1)[0].rstrip()
        if not text:
            return [], 0, None
    if fmt == "hosts":
        raw_names, skipped, problem = _hosts_names(text)
        if problem is not None:
            return [], 0, problem
    else:
        if len(text.split()) > 1:
            return [], 0, "more than one word (is this a hosts file?)"
        raw_names, skipped = (text,), 0
    names: list[str] = []
    problem = None
    for raw in raw_names:
        try:
            names.append(normalise_domain(raw))
        except ValueError as e:
            problem = problem or (f"{raw}: {e}" if fmt == "hosts" else str(e))
    return names, skipped, problem


def _hosts_names(text: str) -> tuple[tuple[str, ...], int, str | None]:
    """A hosts-file line's names (minus plumbing), how many were plumbing, or why it is unusable."""
    parts = text.split()
    if not _is_ip(parts[0]):
        return (), 0, "a hosts-file line must start with an IP address"
    if len(parts) == 1:
        return (), 0, "an address with no names"
    names = tuple(p for p in parts[1:] if p.lower().rstrip(".") not in _HOSTS_PLUMBING)
    return names, len(parts) - 1 - len(names), None


def read_domain_list(path: Path, fmt: str = "auto") -> DomainListResult:
    """Read a list file (gzip-compressed or not) in `fmt`: plain, hosts, ut1, or auto (sniffed).

    Streams the file in blocks of whole lines, so memory holds the domains kept, not the file
    (a line longer than 1 MiB is reported and skipped rather than held).
    Raises ValueError for an unknown format, OSError if the file cannot be read (gzip.BadGzipFile,
    an OSError, for a damaged archive).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown list format {fmt!r} (expected one of {', '.join(FORMATS)})")
    with _open_text(path) as f:
        parser: _ListParser | None = None
        carry = ""
        skipping = False  # inside a line too long to hold: drop it up to its newline
        while block := f.read(_CHUNK_CHARS):
            if skipping:
                end = block.find("\n")
                if end < 0:
                    continue
                block, skipping = block[end + 1 :], False
            text = carry + block
            if parser is None:
                parser = _ListParser(_chosen_format(fmt, text, path))
            cut = text.rfind("\n")
            if cut < 0:
                carry = text
                if len(carry) > _MAX_LINE_CHARS:
                    parser.too_long(carry)
                    carry, skipping = "", True
                continue
            carry = text[cut + 1 :]
            parser.feed(text[:cut])
        if parser is None:
            parser = _ListParser(_chosen_format(fmt, carry, path))
        if carry:
            parser.feed(carry)
        return parser.result()


def _chosen_format(fmt: str, first_block: str, path: Path) -> ListFormat:
    """The format asked for, or the one sniffed from the first block (past any comment header)."""
    if fmt == "auto":
        return sniff_format(first_block.split("\n"), path.name)
    return fmt  # type: ignore[return-value]  # checked against FORMATS by the caller


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    """Open as UTF-8 text; undecodable bytes survive as surrogates and fail their line only.

    gzip is recognised by its magic bytes, not the file name. Closes the file and any
    decompressor on the way out (GzipFile does not close a file object it was handed).
    """
    with path.open("rb") as raw:
        binary: IO[bytes] = raw
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            binary = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        with io.TextIOWrapper(
            binary,  # type: ignore[arg-type]  # GzipFile is a BufferedIOBase at runtime
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline=None,
        ) as text:
            yield text
