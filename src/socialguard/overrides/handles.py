"""One read-only descriptor per store file for the whole process, never an open/close beside SQLite.

POSIX drops every fcntl lock a process holds on a file the moment the process closes *any*
descriptor of that file ("How To Corrupt An SQLite Database File", section 2.2). SQLite works
around it for its own descriptors only. In WAL mode each connection keeps a SHARED lock on the
database for its whole life; once the process has silently lost it, a CLI process that closes
takes the database as its last user, checkpoints it and deletes the `-wal` and `-shm` the proxy
still has open: from then on the proxy reads a frozen past and its own writes go to a deleted
file (issue 19, split brain). A header check with `open()` did exactly that on every
`open_store()` of a file the process already had open.

So the store reads the file's header through a `FileHandle` held here: one descriptor per
(st_dev, st_ino), opened the first time a store of this process uses the file and closed only
when the last store using it has closed (its connections first). A descriptor that turns out to
duplicate one already held (the path was replaced between stat and open) is kept with it, never
closed early — as SQLite itself keeps them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

FileKey = tuple[int, int]  # (st_dev, st_ino)


@dataclass
class _Entry:
    fd: int
    users: int = 0
    spares: list[int] = field(default_factory=list)


_lock = threading.Lock()
_held: dict[FileKey, _Entry] = {}


@dataclass(frozen=True)
class FileHandle:
    """A use of the process-wide descriptor of one file: read it, then `release()` once."""

    key: FileKey
    fd: int

    def header(self, size: int) -> bytes:
        """The first `size` bytes (pread: no shared offset, no new descriptor)."""
        return os.pread(self.fd, size, 0)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def release(self) -> None:
        """This use is over; the last one closes the descriptors (no store connection is left)."""
        with _lock:
            entry = _held.get(self.key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del _held[self.key]
        for fd in (entry.fd, *entry.spares):
            os.close(fd)


def acquire(path: Path) -> FileHandle:
    """A use of the descriptor of the file now at `path`; raises OSError as `open()` would.

    The descriptor already held for that file is reused (a stat, no open), so opening a second
    store never drops the locks of the first."""
    with _lock:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino)
        entry = _held.get(key)
        if entry is None:
            # O_NONBLOCK: a FIFO at the path must not hang the proxy; a regular file ignores it.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)  # what was opened, if the path changed since the stat
            entry = _held.get(key)
            if entry is None:
                entry = _held[key] = _Entry(fd)
            else:
                entry.spares.append(fd)  # a duplicate: closing it would drop the locks
        entry.users += 1
        return FileHandle(key, entry.fd)


def held() -> dict[FileKey, int]:
    """How many stores of this process use each held file (for tests)."""
    with _lock:
        return {key: entry.users for key, entry in _held.items()}
