"""Who may read what socialguard writes: the service alone, or the service and its auditors.

- Secrets and state are the service's alone: the overrides store (it holds the key that signs
  the block page's form tokens: whoever reads it mints valid ones) and its `-wal`/`-shm`, the
  checkpoint signing key, the interception CA's directory (its key impersonates every site to
  every district device; `wireguard.conf` holds tunnel keys). Files 0600, the CA directory 0700.
- The decision log and its checkpoints are read by auditors: directories 2750 and files 0640. The
  set-group-id bit makes every new file take the directory's group, so a district gives its
  auditors access once (`chgrp -R socialguard-audit <log> <checkpoints>`), and the state
  directory above them is 0750 so the group can pass through it.
- Nothing is readable by other accounts.
- Administrators who are not the service: IT opens the state directory to their OS group once
  (`chgrp sg-admins <state> && chmod 2770 <state>`). A state directory that is set-group-id and
  group-writable is *shared*: it stays 2770, and the store and its `-wal`/`-shm` are 0660 in
  that group, so members run `socialguard grant …` as themselves (SQLite gives `-wal`/`-shm` the
  store's own mode). The service's account must be in that group too. Members can then write the
  store directly, bypassing their `roles:`: a district that must hold an administrator to a role
  gives them `sudo socialguard …` instead (the actor is then the sudo user).

Every entry point sets `PROCESS_UMASK` first (the CLI's `main`, the mitmdump entry point), so what
any code path or library creates (gzip output, anchors, mitmproxy's files) grants nothing to
others; secrets get their 0600/0700 explicitly at creation, and a store or directory left more open
by an older version is tightened when it is next opened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PROCESS_UMASK = 0o027  # group: at most read; others: nothing
SECRET_FILE = 0o600
PRIVATE_DIR = 0o700
STATE_DIR = 0o750
AUDIT_DIR = 0o2750
AUDIT_FILE = 0o640
SHARED_STATE_DIR = 0o2770
SHARED_STORE_FILE = 0o660


def restrict_umask() -> None:
    """At process start: nothing created from here on is readable by other accounts."""
    os.umask(PROCESS_UMASK)


def _tighten(path: Path, allowed: int, extra: int = 0) -> None:
    """Drop the permission bits of `path` beyond `allowed` (and add `extra`); never widens.

    A path owned by another account is left as it is (with a warning): the service cannot change
    it, and refusing to start over it would be worse than running. A sticky directory (`/tmp`
    given as the state directory) is shared by design and never changed.
    """
    try:
        st = path.stat()
        current = stat.S_IMODE(st.st_mode)
        if current & stat.S_ISVTX or st.st_uid != os.geteuid():
            if current & 0o007:
                log.warning("file_mode_not_tightened", path=str(path), mode=oct(current))
            return
        wanted = (current & allowed) | extra
        if wanted != current:
            path.chmod(wanted)
            log.info("file_mode_tightened", path=str(path), was=oct(current), now=oct(wanted))
    except FileNotFoundError:
        return
    except OSError as e:  # not ours, or a read-only file system (/etc under systemd)
        log.warning("file_mode_not_tightened", path=str(path), error=e.strerror)


def _make_dirs(path: Path, mode: int) -> None:
    """`mkdir -p` where every directory created gets `mode`."""
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=mode)
        except FileExistsError:
            continue  # made meanwhile by another process
        p.chmod(mode)  # mkdir's mode passes through the umask, and never sets set-group-id


def state_dir(path: Path) -> Path:
    """The state directory: the service's, passable by the auditors' group (to the log); a shared
    one (2770, see the module docstring) keeps its group's write access."""
    _make_dirs(path, STATE_DIR)
    if is_shared(path):
        _tighten(path, SHARED_STATE_DIR & 0o777, stat.S_ISGID)
    else:
        _tighten(path, STATE_DIR)
    return path


def is_shared(directory: Path) -> bool:
    """A state directory IT opened to an administrators' group: set-group-id, group rwx."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return bool(mode & stat.S_ISGID) and mode & 0o070 == 0o070


def store_file(path: Path, *, create: bool = True) -> Path:
    """The overrides store (or its `-wal`/`-shm`): a secret file, or 0660 in the directory's
    group when the state directory is shared (members of that group use the store)."""
    if not is_shared(path.parent):
        return secret_file(path, create=create)
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE))
        st = path.stat()
        if st.st_uid == os.geteuid():
            gid = path.parent.stat().st_gid
            if st.st_gid != gid:
                os.chown(path, -1, gid)
            if stat.S_IMODE(st.st_mode) != SHARED_STORE_FILE:
                path.chmod(SHARED_STORE_FILE)  # widened on purpose: the directory says so
    except (FileNotFoundError, PermissionError):
        pass  # absent, or a directory this account may not enter: opening the store says so
    except OSError as e:
        log.warning("file_mode_not_shared", path=str(path), error=e.strerror)
    return path


def private_dir(path: Path) -> Path:
    """A directory of secrets (the CA's): the service's alone."""
    _make_dirs(path.parent, STATE_DIR)
    _make_dirs(path, PRIVATE_DIR)
    _tighten(path, PRIVATE_DIR)
    return path


def audit_dir(path: Path) -> Path:
    """A directory the auditors read (the decision log, checkpoints): 2750."""
    _make_dirs(path.parent, STATE_DIR)
    _make_dirs(path, AUDIT_DIR)
    _tighten(path, STATE_DIR, stat.S_ISGID)
    return path


def secret_file(path: Path, *, create: bool = True) -> Path:
    """Make sure `path` (created empty when missing and `create`) is readable and writable by
    the service alone, before anything writes to it. SQLite creates a database's `-wal` and `-shm`
    with the database's own mode."""
    if create:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE))
            return path
        except FileExistsError:
            pass
    _tighten(path, SECRET_FILE)
    return path


def audit_file(fd: int) -> None:
    """A decision-log or checkpoint file just created: the service writes, auditors read."""
    os.fchmod(fd, AUDIT_FILE)
