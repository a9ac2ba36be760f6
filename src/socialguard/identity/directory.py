"""The district's directory (OpenLDAP, Active Directory): password sign-in, and a person's groups.

`authenticate(username, password)` is how the sign-in page checks an LDAP password: the service
account finds the one entry whose user attribute is `username`, and the password is checked by
binding *as that entry* (the directory decides, socialguard never sees a hash). `lookup(username)`
gives the groups (nested groups resolved) and mail of a person another source named (RADIUS
accounting), so `identity.groups` can map directory groups onto policy groups.

Every call is blocking network I/O with bounded timeouts: callers run it on a thread of their own,
never on mitmproxy's event loop. A failure to reach or use the directory raises `DirectoryError`
(its message names the URL or the field) and is counted in `counters` for /metrics; a wrong
password or an unknown person is an answer (None), not an error.

Traps this module closes, each with a test in tests/identity/test_identity_directory.py:
- an empty password is refused before any bind: LDAP's "unauthenticated bind" (a DN with no
  password) succeeds on most servers, which would sign anyone in as anyone;
- the user name is escaped into the search filter (RFC 4515: `*`, `(`, `)`, `\\`, NUL), so
  `*` or `alice)(uid=*` matches no one rather than everyone;
- a name matching no entry or more than one is refused (never "the first");
- nested groups are followed breadth-first with a cycle guard and a depth bound;
- referrals are never followed (ldap3 would bind to the host a referral names with the service
  account's password).
"""

from __future__ import annotations

import contextlib
import math
import ssl
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from ldap3 import BASE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException

from socialguard.engine.identity import DirectorySpec, _url_host
from socialguard.errors import SocialGuardError

__all__ = [
    "Directory",
    "DirectoryError",
    "DirectoryUser",
    "escape_filter_value",
    "open_directory",
]

log = structlog.get_logger(__name__)

_MAX_USERNAME = 256
_MAX_PASSWORD = 1024
_MAX_GROUPS = 1000  # a person in more groups than this is a misconfigured directory, not a person


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A person as the directory knows them.

    `username` is the value of the user attribute as stored in the directory (its spelling, not
    the one typed); `groups` the names (`group_name_attribute`, cn by default) of every group the
    person is in, directly or through nested groups.
    """

    username: str
    display_name: str | None
    email: str | None
    groups: frozenset[str]


class DirectoryError(SocialGuardError):
    """The directory cannot be reached or used as configured; the message names the URL or field."""


def escape_filter_value(value: str) -> str:
    """A value made safe to put inside an LDAP search filter (RFC 4515 §3): `*`, `(`, `)`, `\\`
    and NUL become `\\2a`, `\\28`, `\\29`, `\\5c`, `\\00`, so a value never adds a wildcard or a
    clause to the filter it is placed in."""
    out = []
    for ch in value:
        if ch in "*()\\\x00":
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _read_password(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DirectoryError(f"bind_password_file: cannot read {path}: {e.strerror}") from e
    if not lines or not lines[0]:
        raise DirectoryError(f"bind_password_file: {path} is empty")
    return lines[0]


class _VerifyingTls(Tls):  # type: ignore[misc] # ldap3 ships no types
    """TLS with Python's own certificate and host name checks.

    ldap3 2.9 turns the context's `check_hostname` off and checks names itself with a backport
    that ignores IP address SANs; this hands the socket to a standard `ssl` context instead, so a
    directory's certificate is checked exactly as any other TLS client checks it.
    """

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._host,
        )


class Directory:
    """One configured directory. Thread-safe: every call opens its own connections."""

    def __init__(self, spec: DirectorySpec, bind_password: str, ca_file: Path | None) -> None:
        self.spec = spec
        self.url = spec.url
        self._bind_password = bind_password
        scheme, host, port = _url_host(spec.url)
        tls = None
        if spec.tls:
            context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            tls = _VerifyingTls(context, host)
        self._host, self._port, self._ssl, self._tls = host, port, scheme == "ldaps", tls
        self._lock = threading.Lock()
        # failures by reason (unreachable, service_bind, search, ambiguous) and answers given
        self.failures: Counter[str] = Counter()
        self.results: Counter[str] = Counter()

    # ----------------------------------------------------------------- the contract

    def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The person whose password this is, or None (unknown, ambiguous or wrong password).

        Blocking: run it on a thread. Raises DirectoryError when the directory cannot be
        reached or the service account cannot search.
        """
        if not self._acceptable(username) or not password or len(password) > _MAX_PASSWORD:
            self._count_result("refused")
            return None  # an empty password is an unauthenticated bind: it would "succeed"
        with self._service() as conn:
            found = self._find_user(conn, username)
            if found is None:
                self._count_result("refused")
                return None
            dn, attrs = found
            if not self._password_ok(dn, password):
                self._count_result("refused")
                return None
            user = self._user(conn, dn, attrs)
        self._count_result("authenticated")
        return user

    def lookup(self, username: str) -> DirectoryUser | None:
        """The person another source named (RADIUS), with groups and mail; None if the
        directory has no single entry by that name. Blocking; raises DirectoryError."""
        if not self._acceptable(username):
            self._count_result("unknown")
            return None
        with self._service() as conn:
            found = self._find_user(conn, username)
            if found is None:
                self._count_result("unknown")
                return None
            user = self._user(conn, *found)
        self._count_result("found")
        return user

    def check(self) -> None:
        """Reach the directory and bind as the service account, and see that both bases exist.
        Raises DirectoryError naming the URL or field: used at start, so a directory that
        cannot be used is a clear error there rather than failed sign-ins later."""
        with self._service() as conn:
            for field, base in (
                ("user_base", self.spec.user_base),
                ("group_base", self.spec.group_base),
            ):
                try:
                    ok = conn.search(base, "(objectClass=*)", BASE, attributes=[])
                except LDAPException as e:
                    raise self._fail("search", f"{field}: {base!r} on {self.url}: {e}") from e
                if not ok or not conn.entries:
                    raise self._fail("search", f"{field}: {base!r} not found on {self.url}")

    def counters(self) -> dict[str, dict[str, int]]:
        """Answers given and failures by reason, for /metrics."""
        with self._lock:
            return {"results": dict(self.results), "failures": dict(self.failures)}

    # ----------------------------------------------------------------- the steps

    def _acceptable(self, username: str) -> bool:
        return (
            bool(username)
            and len(username) <= _MAX_USERNAME
            and username == username.strip()
            and not any(ord(ch) < 0x20 or ch == "\x7f" for ch in username)
        )

    def _count_result(self, result: str) -> None:
        with self._lock:
            self.results[result] += 1

    def _fail(self, reason: str, message: str) -> DirectoryError:
        with self._lock:
            self.failures[reason] += 1
        log.error("directory_failed", reason=reason, url=self.url, error=message)
        return DirectoryError(message)

    def _connect(self, dn: str, password: str) -> Connection:
        """An open connection (TLS in force where configured), bound as `dn`. Raises
        LDAPException; an invalid password shows as `bind()` returning False."""
        # a Server per connection: ldap3 keeps per-server state (the address in use, its
        # availability) that concurrent sign-ins on several threads would share
        server = Server(
            self._host,
            port=self._port,
            use_ssl=self._ssl,
            tls=self._tls,
            connect_timeout=self.spec.timeout,
            get_info=None,
        )
        conn = Connection(
            server,
            user=dn,
            password=password,
            # whole seconds: ldap3 packs it into SO_RCVTIMEO as an integer
            receive_timeout=math.ceil(self.spec.timeout),
            auto_bind=False,
            raise_exceptions=False,
            read_only=True,
            # ldap3 follows a referral by binding to the host it names with these credentials
            # (by default to any host, over any transport): a planted or stale referral would
            # hand it the service account's password. A referral is an error here instead.
            auto_referrals=False,
        )
        try:
            conn.open()
            if self.spec.starttls and not conn.start_tls():
                raise _StartTlsRefused(str((conn.result or {}).get("description", "refused")))
        except BaseException:
            _close(conn)
            raise
        return conn

    def _service(self) -> _Bound:
        """The service account's connection, as a context manager."""
        try:
            conn = self._connect(self.spec.bind_dn, self._bind_password)
        except _StartTlsRefused as e:
            raise self._fail("unreachable", f"url: {self.url}: StartTLS refused: {e}") from e
        except (LDAPException, OSError) as e:
            raise self._fail("unreachable", f"url: {self.url} cannot be reached: {e}") from e
        try:
            ok = conn.bind()
        except (LDAPException, OSError) as e:
            _close(conn)
            raise self._fail("unreachable", f"url: {self.url}: {e}") from e
        if not ok:
            why = conn.result.get("description", "refused") if conn.result else "refused"
            _close(conn)
            raise self._fail(
                "service_bind", f"bind_dn: {self.spec.bind_dn!r} cannot bind to {self.url}: {why}"
            )
        return _Bound(conn)

    def _find_user(self, conn: Connection, username: str) -> tuple[str, dict[str, Any]] | None:
        spec = self.spec
        clause = f"({spec.user_attribute}={escape_filter_value(username)})"
        query = f"(&{clause}{spec.user_filter})" if spec.user_filter else clause
        attrs = [spec.user_attribute, spec.display_name_attribute, spec.mail_attribute]
        if spec.member_of_attribute:
            attrs.append(spec.member_of_attribute)
        entries = self._search(conn, spec.user_base, query, SUBTREE, attrs, size_limit=2)
        if len(entries) != 1:
            if len(entries) > 1:
                with self._lock:
                    self.failures["ambiguous"] += 1
                log.warning("directory_ambiguous_user", url=self.url, username=username)
            return None
        return entries[0]

    def _password_ok(self, dn: str, password: str) -> bool:
        """Bind as the person's own entry with their password: the directory's answer."""
        try:
            conn = self._connect(dn, password)
        except (LDAPException, OSError, _StartTlsRefused) as e:
            raise self._fail("unreachable", f"url: {self.url} cannot be reached: {e}") from e
        try:
            return bool(conn.bind())
        except (LDAPException, OSError) as e:
            raise self._fail("unreachable", f"url: {self.url}: {e}") from e
        finally:
            _close(conn)

    def _user(self, conn: Connection, dn: str, attrs: dict[str, Any]) -> DirectoryUser:
        spec = self.spec
        return DirectoryUser(
            username=_first(attrs.get(spec.user_attribute)) or "",
            display_name=_first(attrs.get(spec.display_name_attribute)),
            email=_first(attrs.get(spec.mail_attribute)),
            groups=self._groups(conn, dn, attrs),
        )

    def _groups(self, conn: Connection, dn: str, attrs: dict[str, Any]) -> frozenset[str]:
        """Every group `dn` is in, nested groups followed breadth-first.

        Each level is one search for the groups whose member attribute names any DN of the
        level before. `seen` cuts a cycle (a ⊂ b ⊂ a) where it closes; `nesting_depth` bounds a
        chain that is merely long, and `_MAX_GROUPS` the total.
        """
        spec = self.spec
        names: set[str] = set()
        seen: set[str] = {dn.lower()}
        frontier: list[str] = [dn]
        direct_of: list[str] = []
        if spec.member_of_attribute:
            direct_of = [str(g) for g in _values(attrs.get(spec.member_of_attribute))]
        for level in range(spec.nesting_depth):
            found: list[tuple[str, dict[str, Any]]] = []
            if frontier:
                found.extend(self._member_groups(conn, frontier))
            if level == 0 and direct_of:
                found.extend(self._groups_by_dn(conn, direct_of))
            frontier = []
            for gdn, gattrs in found:
                key = gdn.lower()
                if key in seen:
                    continue
                seen.add(key)
                name = _first(gattrs.get(spec.group_name_attribute))
                if name:
                    names.add(name)
                frontier.append(gdn)
            if not frontier or len(seen) > _MAX_GROUPS:
                break
        return frozenset(names)

    def _member_groups(
        self, conn: Connection, members: list[str]
    ) -> list[tuple[str, dict[str, Any]]]:
        attr = self.spec.group_member_attribute
        out: list[tuple[str, dict[str, Any]]] = []
        for i in range(0, len(members), 50):  # keep each filter a sensible size
            clauses = "".join(f"({attr}={escape_filter_value(m)})" for m in members[i : i + 50])
            out.extend(
                self._search(
                    conn,
                    self.spec.group_base,
                    f"(|{clauses})",
                    SUBTREE,
                    [self.spec.group_name_attribute],
                    size_limit=_MAX_GROUPS,
                )
            )
        return out

    def _groups_by_dn(
        self, conn: Connection, dns: Iterable[str]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The groups a memberOf attribute names, if they are under `group_base`."""
        base = self.spec.group_base.lower()
        out: list[tuple[str, dict[str, Any]]] = []
        for gdn in list(dns)[:_MAX_GROUPS]:
            if not gdn.lower().endswith(base):
                continue  # a group outside the configured base is not the district's to map
            out.extend(
                self._search(conn, gdn, "(objectClass=*)", BASE, [self.spec.group_name_attribute])
            )
        return out

    def _search(
        self,
        conn: Connection,
        base: str,
        query: str,
        scope: str,
        attributes: list[str],
        *,
        size_limit: int = 0,
    ) -> list[tuple[str, dict[str, Any]]]:
        try:
            conn.search(
                base,
                query,
                scope,
                attributes=attributes,
                size_limit=size_limit,
                time_limit=max(1, int(self.spec.timeout)),
            )
        except (LDAPException, OSError) as e:
            raise self._fail("search", f"url: {self.url}: search in {base!r} failed: {e}") from e
        result = conn.result or {}
        code = result.get("result", 0)
        # 0 success, 4 sizeLimitExceeded (more than we asked for: still answers "ambiguous"),
        # 32 noSuchObject (an empty or absent base: no one there)
        if code not in (0, 4, 32):
            raise self._fail(
                "search",
                f"url: {self.url}: search in {base!r} failed: {result.get('description')}",
            )
        return [
            (str(r["dn"]), dict(r.get("attributes", {})))
            for r in conn.response or ()
            if r.get("type") == "searchResEntry"
        ]


class _StartTlsRefused(Exception):
    pass


class _Bound:
    """A bound connection as a context manager that always unbinds."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        _close(self.conn)


def _close(conn: Connection) -> None:
    """Unbind and close, whatever state the connection is in (a failed open leaves a socket)."""
    with contextlib.suppress(Exception):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _first(value: Any) -> str | None:
    vals = _values(value)
    if not vals:
        return None
    v = vals[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def open_directory(spec: DirectorySpec, rules_dir: Path) -> Directory:
    """The directory `spec` configures; files (`bind_password_file`, `ca_file`) are relative to
    `rules_dir`. Raises DirectoryError naming the field when a file cannot be read. Does not
    connect: call `check()` for that."""
    password = _read_password(rules_dir / spec.bind_password_file)
    ca_file = None
    if spec.ca_file is not None:
        ca_file = rules_dir / spec.ca_file
        if not ca_file.is_file():
            raise DirectoryError(f"ca_file: {ca_file} not found")
    try:
        return Directory(spec, password, ca_file)
    except (ssl.SSLError, OSError) as e:
        raise DirectoryError(f"ca_file: {ca_file}: {e}") from e
