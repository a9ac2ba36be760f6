"""Where the decision log's files live and how they are named, opened and listed.

Names are `decisions-<node>-<YYYYMMDD>-<NNNNNN>.jsonl` (gzipped once closed: `.jsonl.gz`), the date
being the district-local day the file was opened. Names are for people and for the writer's restart;
readers order files by the chain inside them (`seq` of the first record), never by name.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

PREFIX = "decisions-"
SUFFIX = ".jsonl"
GZ_SUFFIX = ".jsonl.gz"
PRUNE_ANCHOR_PREFIX = "pruned-"
CHECKPOINT_PREFIX = "checkpoints-"

_NAME = re.compile(r"^decisions-(?P<node>.+)-(?P<date>\d{8})-(?P<index>\d{6})\.jsonl(?P<gz>\.gz)?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_node(node: str) -> str:
    """The node id as it may appear in a file name."""
    return _UNSAFE.sub("_", node) or "node"


def log_file_name(node: str, local_date: str, index: int) -> str:
    """The name of a (plain) log file; `local_date` is YYYYMMDD."""
    return f"{PREFIX}{safe_node(node)}-{local_date}-{index:06d}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class LogFile:
    """One log file found on disk."""

    path: Path
    node_in_name: str
    date: str
    index: int
    gz: bool

    @property
    def base_name(self) -> str:
        """The name without `.gz`: what the chain's file_open/file_close records call it."""
        return self.path.name[:-3] if self.gz else self.path.name


def parse_name(path: Path) -> LogFile | None:
    """A LogFile for a name that follows the pattern, else None."""
    m = _NAME.match(path.name)
    if not m:
        return None
    return LogFile(path, m["node"], m["date"], int(m["index"]), bool(m["gz"]))


def list_log_files(log_dir: Path) -> list[LogFile]:
    """Every log file in a directory; when both `x.jsonl` and `x.jsonl.gz` exist (compression was
    interrupted after the rename) the plain one is kept, it being the original."""
    found: dict[str, LogFile] = {}
    try:
        entries = list(os.scandir(log_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        lf = parse_name(Path(entry.path))
        if lf is None:
            continue
        prior = found.get(lf.base_name)
        if prior is None or prior.gz:
            found[lf.base_name] = lf
    return sorted(found.values(), key=lambda f: (f.node_in_name, f.index))


def open_lines(path: Path) -> IO[bytes]:
    """Open a log file (plain or gzip) for reading lines as bytes."""
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    try:
        return open(path, "rb")
    except FileNotFoundError:
        gz = path.with_name(path.name + ".gz")  # compressed by the writer since it was listed
        if gz.exists():
            return cast(IO[bytes], gzip.open(gz, "rb"))
        raise


CHUNK = 1 << 20


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line with its newline) for each line of a log file, streaming.

    Reads 1 MiB blocks and splits them, which is several times faster than line-by-line reading
    through gzip; memory stays bounded by the block size (plus one line). A last line without a
    newline is yielded as it is (torn, or being written).
    """
    lineno = 0
    rest = b""
    with open_lines(path) as f:
        while block := f.read(CHUNK):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                lineno += 1
                yield lineno, line + b"\n"
    if rest:
        yield lineno + 1, rest


def iter_lines_containing(path: Path, needle: bytes) -> Iterator[tuple[int, bytes]]:
    """Like iter_lines, but only the lines that contain `needle`, found by searching whole blocks.

    A selective search then costs little more than decompression: no per-line Python work for the
    lines that cannot match. Line numbers are counted in C (`bytes.count`).
    """
    base = 0  # lines before the current block
    rest = b""
    with open_lines(path) as f:
        while block := f.read(CHUNK):
            buf = rest + block
            cut = buf.rfind(b"\n") + 1
            data, rest = buf[:cut], buf[cut:]
            pos = counted = 0
            lineno = base
            while (i := data.find(needle, pos)) >= 0:
                start = data.rfind(b"\n", 0, i) + 1
                end = data.find(b"\n", i) + 1
                lineno += data.count(b"\n", counted, start)
                counted = start
                yield lineno + 1, data[start:end]
                pos = end
            base += data.count(b"\n")
    if rest and needle in rest:
        yield base + 1, rest


def first_line(path: Path) -> bytes | None:
    """The first line of a log file, or None if empty."""
    with open_lines(path) as f:
        line = f.readline()
    return line or None


GZIP = shutil.which("gzip")
NICE = [n, "-n", "10"] if (n := shutil.which("nice")) else []


def compress(path: Path, *, external: bool = True) -> Path:
    """Gzip a closed log file safely: write `.gz.tmp`, fsync, rename, then remove the original.

    A crash at any point leaves either the original or a complete `.gz` (and at worst both, which
    list_log_files resolves), never a half-written file under a final name. With `external` (the
    writer's choice) the compressing is done by the system's `gzip` at low priority (nice 10) in its
    own process, so it takes no CPU time or interpreter lock from the proxy that writes the log.
    """
    gz_path = path.with_name(path.name + ".gz")
    tmp = path.with_name(path.name + ".gz.tmp")
    with open(tmp, "wb") as raw:
        if external and GZIP is not None:
            with open(path, "rb") as src:
                subprocess.run([*NICE, GZIP, "-1", "-n", "-c"], stdin=src, stdout=raw, check=True)
        else:
            with (
                open(path, "rb") as src,
                gzip.GzipFile(
                    filename=path.name, mode="wb", fileobj=raw, compresslevel=1, mtime=0
                ) as gz,
            ):
                while chunk := src.read(1 << 20):
                    gz.write(chunk)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, gz_path)
    fsync_dir(path.parent)
    path.unlink()
    return gz_path


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
