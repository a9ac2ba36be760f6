"""The directory source against a real slapd with the district tree (tests/slapd_district.py):
sign-in by bind, nested groups, and the ways an attacker or a broken directory tries to get in."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slapd_district import (  # tests/slapd_district.py
    CHAIN,
    GROUPS,
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    make_ca,
    start_slapd,
)
from socialguard.engine.identity import DirectorySpec
from socialguard.identity.directory import (
    Directory,
    DirectoryError,
    DirectoryUser,
    escape_filter_value,
    open_directory,
)


def directory(slapd: Slapd, tmp_path: Path, **spec: Any) -> Directory:
    """The directory source configured for the test slapd (plain ldap:// on loopback unless the
    test says otherwise)."""
    (tmp_path / "bind.pw").write_text(spec.pop("password", SERVICE_PASSWORD) + "\n")
    fields: dict[str, Any] = {
        "url": slapd.ldap_url,
        "insecure_plaintext_on_loopback": True,
        "bind_dn": SERVICE_DN,
        "bind_password_file": "bind.pw",
        "user_base": PEOPLE,
        "group_base": GROUPS,
        "timeout": 5.0,
    }
    fields.update(spec)
    return open_directory(DirectorySpec(**fields), tmp_path)


# ---------------------------------------------------------------- sign-in


def test_a_teacher_signs_in_with_her_password_and_gets_her_nested_groups(
    slapd: Slapd, tmp_path: Path
) -> None:
    user = directory(slapd, tmp_path).authenticate("alice", PASSWORDS["alice"])
    assert user == DirectoryUser(
        username="alice",
        display_name="Alice Adams",
        email="alice@district.example",
        groups=frozenset({"teachers", "staff"}),  # staff through teachers ⊂ staff
    )


def test_the_name_is_the_directorys_spelling_not_the_one_typed(
    slapd: Slapd, tmp_path: Path
) -> None:
    user = directory(slapd, tmp_path).authenticate("ALICE", PASSWORDS["alice"])
    assert user is not None and user.username == "alice"


def test_sign_ins_on_several_threads_at_once_each_get_their_own_answer(
    slapd: Slapd, tmp_path: Path
) -> None:
    d = directory(slapd, tmp_path)
    people = ["alice", "bob", "carol", "sam"] * 3
    answers: dict[int, DirectoryUser | None] = {}

    def sign_in(i: int, name: str) -> None:
        answers[i] = d.authenticate(name, PASSWORDS[name])

    threads = [threading.Thread(target=sign_in, args=(i, n)) for i, n in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.username if a else None for _, a in sorted(answers.items())] == people


def test_a_wrong_password_signs_no_one_in(slapd: Slapd, tmp_path: Path) -> None:
    d = directory(slapd, tmp_path)
    assert d.authenticate("alice", PASSWORDS["bob"]) is None
    assert d.authenticate("alice", "alice-pw ") is None
    assert d.counters()["results"] == {"refused": 2}


def test_an_empty_password_is_refused_before_any_bind(slapd: Slapd, tmp_path: Path) -> None:
    # The trap is real on this server: a DN with no password binds (as anonymous) ...
    whoami = subprocess.run(
        ["ldapwhoami", "-x", "-H", slapd.ldap_url, "-D", f"uid=alice,{PEOPLE}", "-w", ""],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (whoami.returncode, whoami.stdout.strip()) == (0, "anonymous")
    # ... and must not sign anyone in
    d = directory(slapd, tmp_path)
    assert d.authenticate("alice", "") is None
    assert d.counters()["results"] == {"refused": 1}


@pytest.mark.parametrize(
    "username",
    [
        "*",
        "a*",  # unescaped, matches only alice: her password would sign in "a*" as alice
        "al*e",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice)(|(objectClass=*)",
        "alice\\",
        "alice\x00",
        "alice\x00)(uid=*",
        " alice",
        "",
    ],
)
def test_filter_characters_in_a_name_match_no_one(
    slapd: Slapd, tmp_path: Path, username: str
) -> None:
    d = directory(slapd, tmp_path)
    assert d.authenticate(username, PASSWORDS["alice"]) is None
    assert d.lookup(username) is None
    assert d.counters()["failures"] == {}  # refused as an answer, not a broken search


def test_a_name_with_filter_characters_in_the_directory_signs_in(
    slapd: Slapd, tmp_path: Path
) -> None:
    user = directory(slapd, tmp_path).authenticate("lab(1)", PASSWORDS["lab(1)"])
    assert user is not None
    assert (user.username, user.groups) == ("lab(1)", frozenset({"lab"}))


def test_escape_filter_value_escapes_what_rfc_4515_names() -> None:
    assert escape_filter_value("a*(b)\\c\x00") == "a\\2a\\28b\\29\\5cc\\00"


def test_a_name_two_entries_share_is_refused_even_with_the_right_password(
    slapd: Slapd, tmp_path: Path
) -> None:
    d = directory(slapd, tmp_path)
    assert d.authenticate("pat", PASSWORDS["pat"]) is None
    assert d.lookup("pat") is None
    assert d.counters()["failures"] == {"ambiguous": 2}


def test_an_unknown_person_is_refused(slapd: Slapd, tmp_path: Path) -> None:
    d = directory(slapd, tmp_path)
    assert d.authenticate("mallory", "anything") is None
    assert d.lookup("mallory") is None


def test_a_user_filter_keeps_out_entries_that_do_not_match(slapd: Slapd, tmp_path: Path) -> None:
    d = directory(slapd, tmp_path, user_filter="(mail=*)")  # sam has no mail
    assert d.authenticate("sam", PASSWORDS["sam"]) is None
    assert d.authenticate("alice", PASSWORDS["alice"]) is not None


# ---------------------------------------------------------------- groups


def test_lookup_gives_the_groups_of_a_person_another_source_named(
    slapd: Slapd, tmp_path: Path
) -> None:
    d = directory(slapd, tmp_path)
    carol = d.lookup("carol")
    assert carol is not None
    assert carol.groups == frozenset({"staff", "admins"})
    assert d.counters()["results"] == {"found": 1}


def test_a_cycle_of_groups_ends(slapd: Slapd, tmp_path: Path) -> None:
    sam = directory(slapd, tmp_path).lookup("sam")
    assert sam is not None
    assert sam.groups == frozenset({"students", "loop-a", "loop-b"})
    assert sam.email is None


def test_nested_groups_are_followed_to_the_depth_bound_and_no_further(
    slapd: Slapd, tmp_path: Path
) -> None:
    shallow = directory(slapd, tmp_path, nesting_depth=3).lookup("dave")
    assert shallow is not None
    assert shallow.groups == frozenset({"chain-1", "chain-2", "chain-3"})
    deep = directory(slapd, tmp_path, nesting_depth=64).lookup("dave")
    assert deep is not None
    assert deep.groups == frozenset(f"chain-{i}" for i in range(1, CHAIN + 1))


def test_groups_a_member_of_attribute_names_count_when_configured(
    slapd: Slapd, tmp_path: Path
) -> None:
    """erin is in no group's member list; her memberOf names teachers (⊂ staff, followed on)
    and a group outside the group base, which is not the district's to map."""
    without = directory(slapd, tmp_path).lookup("erin")
    assert without is not None and without.groups == frozenset()
    erin = directory(slapd, tmp_path, member_of_attribute="memberOf").lookup("erin")
    assert erin is not None
    assert erin.groups == frozenset({"teachers", "staff"})


# ---------------------------------------------------------------- a directory that cannot be used


def test_check_passes_against_a_working_directory(slapd: Slapd, tmp_path: Path) -> None:
    directory(slapd, tmp_path).check()


def test_a_wrong_service_password_is_an_error_naming_the_bind_dn(
    slapd: Slapd, tmp_path: Path
) -> None:
    d = directory(slapd, tmp_path, password="guessed")
    with pytest.raises(DirectoryError, match=r"bind_dn: 'cn=socialguard,.*' cannot bind"):
        d.check()
    with pytest.raises(DirectoryError):
        d.authenticate("alice", PASSWORDS["alice"])
    assert d.counters()["failures"] == {"service_bind": 2}


def test_a_base_that_does_not_exist_is_an_error_naming_the_field(
    slapd: Slapd, tmp_path: Path
) -> None:
    d = directory(slapd, tmp_path, group_base="ou=nowhere,dc=district,dc=example")
    with pytest.raises(DirectoryError, match="group_base: 'ou=nowhere,dc=district,dc=example'"):
        d.check()


def test_an_unreachable_directory_is_an_error_naming_the_url(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (tmp_path / "bind.pw").write_text("pw\n")
    spec = DirectorySpec(
        url=f"ldap://127.0.0.1:{port}",
        insecure_plaintext_on_loopback=True,
        bind_dn=SERVICE_DN,
        bind_password_file="bind.pw",
        user_base=PEOPLE,
        group_base=GROUPS,
    )
    d = open_directory(spec, tmp_path)
    with pytest.raises(DirectoryError, match=f"url: ldap://127.0.0.1:{port} cannot be reached"):
        d.check()
    assert d.counters()["failures"] == {"unreachable": 1}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung directory)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        t.join(timeout=5)
        listener.close()
        for c in held:
            c.close()


def test_a_directory_that_never_answers_is_an_error_after_the_timeout(
    silent_server: int, tmp_path: Path
) -> None:
    (tmp_path / "bind.pw").write_text("pw\n")
    spec = DirectorySpec(
        url=f"ldap://127.0.0.1:{silent_server}",
        insecure_plaintext_on_loopback=True,
        bind_dn=SERVICE_DN,
        bind_password_file="bind.pw",
        user_base=PEOPLE,
        group_base=GROUPS,
        timeout=1.0,
    )
    d = open_directory(spec, tmp_path)
    with pytest.raises(DirectoryError, match=f"127.0.0.1:{silent_server}"):
        d.authenticate("alice", "pw")


def test_a_missing_password_file_is_an_error_naming_the_field(tmp_path: Path) -> None:
    spec = DirectorySpec(
        url="ldaps://127.0.0.1",
        bind_dn=SERVICE_DN,
        bind_password_file="nope.pw",
        user_base=PEOPLE,
        group_base=GROUPS,
    )
    with pytest.raises(DirectoryError, match="bind_password_file: cannot read"):
        open_directory(spec, tmp_path)


# ---------------------------------------------------------------- TLS


def test_ldaps_with_the_districts_ca_signs_in(slapd: Slapd, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(slapd.ca_file.read_bytes())
    d = directory(
        slapd, tmp_path, url=slapd.ldaps_url, insecure_plaintext_on_loopback=False, ca_file="ca.pem"
    )
    d.check()
    user = d.authenticate("alice", PASSWORDS["alice"])
    assert user is not None and user.groups == frozenset({"teachers", "staff"})


def test_starttls_with_the_districts_ca_signs_in(slapd: Slapd, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(slapd.ca_file.read_bytes())
    d = directory(
        slapd, tmp_path, starttls=True, insecure_plaintext_on_loopback=False, ca_file="ca.pem"
    )
    d.check()
    assert d.authenticate("bob", PASSWORDS["bob"]) is not None


@pytest.mark.parametrize("starttls", [False, True])
def test_a_directory_certificate_from_another_ca_is_refused(
    slapd: Slapd, tmp_path: Path, starttls: bool
) -> None:
    """Someone between the proxy and the directory with a certificate of their own gets no
    password: the connection fails before the bind."""
    other_ca, _, _ = make_ca(tmp_path / "other", name="Not The District")
    d = directory(
        slapd,
        tmp_path,
        url=slapd.ldap_url if starttls else slapd.ldaps_url,
        starttls=starttls,
        insecure_plaintext_on_loopback=False,
        ca_file=str(other_ca),
    )
    with pytest.raises(DirectoryError, match="url: ldap"):
        d.check()
    with pytest.raises(DirectoryError):
        d.authenticate("alice", PASSWORDS["alice"])


# ---------------------------------------------------------------- referrals


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP port that records every byte sent to it (and answers nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                got.append(b"<connected>")
                with contextlib.suppress(OSError):
                    got.append(conn.recv(65536))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield server.getsockname()[1], got
    finally:
        stop.set()
        t.join(timeout=5)
        server.close()


def test_a_referral_is_not_followed_with_the_service_accounts_password(
    listener: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    """A referral in the people tree (planted, or left from a migration) must not make the proxy
    connect elsewhere and bind there with the service account's password."""
    port, got = listener
    referral = (
        f"dn: ou=elsewhere,{PEOPLE}\nobjectClass: referral\nobjectClass: extensibleObject\n"
        f"ou: elsewhere\nref: ldap://127.0.0.1:{port}/ou=people,dc=elsewhere\n"
    )
    server = start_slapd(tmp_path / "slapd", extra_ldif=referral)
    try:
        # the referral below the people base comes back as a continuation reference
        d = directory(server, tmp_path)
        assert d.lookup("mallory") is None
        assert d.authenticate("alice", PASSWORDS["alice"]) is not None
        # and a base that is itself a referral answers "referral" (result 10)
        moved = directory(server, tmp_path, user_base=f"ou=elsewhere,{PEOPLE}")
        with pytest.raises(DirectoryError, match="search in 'ou=elsewhere"):
            moved.lookup("alice")
    finally:
        server.stop()
    assert got == []  # nothing, and no password, went to the referral's host
