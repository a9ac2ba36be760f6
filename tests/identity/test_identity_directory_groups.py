"""Directory groups for people RADIUS names: looked up off the request path, cached, merged into
the bindings snapshot, and looked up again once stale. Real slapd, real RADIUS packets."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slapd_district import (  # tests/slapd_district.py
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    ldapmodify,
)
from socialguard.engine.identity import DirectorySpec, IdentitySpec, RadiusSpec
from socialguard.identity import IdentityService
from socialguard.identity.directory import open_directory
from socialguard.identity.directory_groups import DirectoryGroups

SECRET = "s3cret-for-tests"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def directory_spec(slapd: Slapd, url: str | None = None) -> DirectorySpec:
    return DirectorySpec(
        url=url or slapd.ldap_url,
        insecure_plaintext_on_loopback=True,
        bind_dn=SERVICE_DN,
        bind_password_file="bind.pw",
        user_base=PEOPLE,
        group_base=GROUPS,
        timeout=5.0,
    )


def radclient(port: int, user: str, address: str, status: str = "Start") -> None:
    attrs = (
        f'User-Name = "{user}", Acct-Status-Type = {status}, Framed-IP-Address = {address}, '
        f'Class = "staff-wifi", Acct-Session-Id = "sess-{user}"'
    )
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "2", "-q", f"127.0.0.1:{port}", "acct", SECRET],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def wait_for(predicate: Callable[[], bool]) -> None:
    """Until `predicate()` (a worker thread's answer arriving); bounded, never a timed assertion."""
    for _ in range(200):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("the directory's answer never arrived")


@pytest.fixture
def service(slapd: Slapd, tmp_path: Path) -> Iterator[tuple[IdentityService, int]]:
    if shutil.which("radclient") is None:
        pytest.skip("needs radclient (freeradius-utils)")
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    (tmp_path / "radius.secret").write_text(SECRET + "\n")
    port = free_udp_port()
    spec = IdentitySpec(
        radius=RadiusSpec(listen=f"127.0.0.1:{port}", secret_file="radius.secret"),
        directory=directory_spec(slapd),
    )
    svc = IdentityService()
    svc.configure(spec, tmp_path, tmp_path / "state")
    try:
        yield svc, port
    finally:
        svc.stop()


def groups_of(svc: IdentityService, address: str) -> frozenset[str] | None:
    b = svc.person(address)
    return b.groups if b is not None else None


def test_a_person_radius_binds_gets_their_directory_groups_in_the_snapshot(
    service: tuple[IdentityService, int],
) -> None:
    svc, port = service
    radclient(port, "alice", "10.20.0.7")
    wait_for(lambda: groups_of(svc, "10.20.0.7") != frozenset({"staff-wifi"}))
    assert groups_of(svc, "10.20.0.7") == frozenset({"staff-wifi", "teachers", "staff"})
    # the same person on a second device: the cached answer, at once
    radclient(port, "alice", "10.20.0.8")
    assert groups_of(svc, "10.20.0.8") == frozenset({"staff-wifi", "teachers", "staff"})
    assert svc.counters()["directory"]["results"] == {"found": 1}


def test_the_stop_ends_the_binding_directory_groups_and_all(
    service: tuple[IdentityService, int],
) -> None:
    svc, port = service
    radclient(port, "carol", "10.20.0.9")
    wait_for(lambda: "admins" in (groups_of(svc, "10.20.0.9") or ()))
    radclient(port, "carol", "10.20.0.9", status="Stop")
    assert svc.person("10.20.0.9") is None


def test_someone_the_directory_does_not_know_keeps_the_radius_groups_only(
    service: tuple[IdentityService, int],
) -> None:
    svc, port = service
    radclient(port, "visitor", "10.20.0.10")
    wait_for(lambda: svc.counters()["directory"]["results"].get("unknown") == 1)
    assert groups_of(svc, "10.20.0.10") == frozenset({"staff-wifi"})


def test_the_store_keeps_what_radius_said(service: tuple[IdentityService, int]) -> None:
    """A restart must not carry yesterday's directory groups as if RADIUS had said them."""
    svc, port = service
    radclient(port, "bob", "10.20.0.11")
    wait_for(lambda: "teachers" in (groups_of(svc, "10.20.0.11") or ()))
    assert svc._store is not None
    stored = svc._store.find("10.20.0.11", time.time())
    assert stored is not None and stored.groups == frozenset({"staff-wifi"})


def test_an_unreachable_directory_is_an_error_naming_the_url_and_starts_nothing(
    slapd: Slapd, tmp_path: Path
) -> None:
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    (tmp_path / "radius.secret").write_text(SECRET + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"ldap://127.0.0.1:{s.getsockname()[1]}"
    spec = IdentitySpec(
        radius=RadiusSpec(listen=f"127.0.0.1:{free_udp_port()}", secret_file="radius.secret"),
        directory=directory_spec(slapd, url=dead),
    )
    svc = IdentityService()
    try:
        with pytest.raises(ValueError, match=f"directory: url: {dead} cannot be reached"):
            svc.configure(spec, tmp_path, tmp_path / "state")
        assert (svc.radius, svc.directory_groups) == (None, None)
    finally:
        svc.stop()


# ---------------------------------------------------------------- the cache, with a manual clock


class Answers:
    def __init__(self) -> None:
        self.got: list[tuple[str, frozenset[str]]] = []
        self.arrived = threading.Event()

    def __call__(self, user: str, groups: frozenset[str]) -> None:
        self.got.append((user, groups))
        self.arrived.set()

    def wait(self) -> tuple[str, frozenset[str]]:
        assert self.arrived.wait(20), "no answer from the directory worker"
        self.arrived.clear()
        return self.got[-1]


def test_a_stale_answer_is_looked_up_again_and_a_change_in_the_directory_arrives(
    slapd: Slapd, tmp_path: Path
) -> None:
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    now = [1000.0]
    answers = Answers()
    dg = DirectoryGroups(
        open_directory(directory_spec(slapd), tmp_path),
        ttl_s=900.0,
        on_groups=answers,
        still_bound=lambda _user: True,
        clock=lambda: now[0],
    ).start()
    try:
        assert dg.groups("bob") is None  # not yet: asks for a lookup
        assert answers.wait() == ("bob", frozenset({"teachers", "staff"}))
        ldapmodify(
            slapd,
            f"dn: cn=teachers,{GROUPS}\nchangetype: modify\ndelete: member\n"
            f"member: uid=bob,{PEOPLE}\n",
        )
        try:
            now[0] += 899  # still fresh: the cached answer, no lookup
            assert dg.groups("bob") == frozenset({"teachers", "staff"})
            assert dg.directory.counters()["results"] == {"found": 1}
            now[0] += 1  # stale: the old answer until the new one arrives
            assert dg.groups("bob") == frozenset({"teachers", "staff"})
            assert answers.wait() == ("bob", frozenset())
            assert dg.groups("bob") == frozenset()
        finally:
            ldapmodify(
                slapd,
                f"dn: cn=teachers,{GROUPS}\nchangetype: modify\nadd: member\n"
                f"member: uid=bob,{PEOPLE}\n",
            )
    finally:
        dg.stop()


def test_a_failing_directory_keeps_the_last_answer(slapd: Slapd, tmp_path: Path) -> None:
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    now = [1000.0]
    answers = Answers()
    directory = open_directory(directory_spec(slapd), tmp_path)
    dg = DirectoryGroups(directory, 900.0, answers, lambda _u: True, lambda: now[0]).start()
    try:
        dg.groups("carol")
        assert answers.wait() == ("carol", frozenset({"staff", "admins"}))
        directory._bind_password = "changed-under-us"  # the service account stops working
        now[0] += 901
        assert dg.groups("carol") == frozenset({"staff", "admins"})
        wait_for(lambda: directory.counters()["failures"].get("service_bind") == 1)
        wait_for(lambda: "carol" not in dg._pending)
        assert dg.groups("carol") == frozenset({"staff", "admins"})  # kept, retried later
        assert len(answers.got) == 1
    finally:
        dg.stop()
