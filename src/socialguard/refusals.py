"""Telling "the system refused" from "the input was bad", for exit codes and messages.

A port in use, a full or read-only disk, missing permissions: the same command works once the
system is fixed, and scripts (and systemd) should see that it was not the operator's input. The
cause may come as an exception chain (an OSError at its root) or only as text (mitmproxy logs an
addon's error as a message; SQLite says "database or disk is full"), so both are read.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable

__all__ = ["ENVIRONMENT_ERRNOS", "environment_refused"]

ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ENOSPC, errno.EDQUOT, errno.EROFS,
        errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
    }
)  # fmt: skip
_WORDS = (
    *(os.strerror(code).lower() for code in ENVIRONMENT_ERRNOS),
    "read-only file system",
    "read-only to this user",
    "no space left",
    "disk is full",
    "address already in use",
)
_ERRNO = re.compile(r"\[Errno (\d+)\]")


def environment_refused(exc: BaseException | None = None, texts: Iterable[str] = ()) -> bool:
    """Whether `exc` (or anything in its chain) or any of `texts` says the system refused."""
    seen: list[str] = list(texts)
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            return True
        seen.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    for text in seen:
        lower = text.lower()
        if any(w in lower for w in _WORDS):
            return True
        if any(int(n) in ENVIRONMENT_ERRNOS for n in _ERRNO.findall(text)):
            return True
    return False
