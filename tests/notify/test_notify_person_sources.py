"""Where the person's address comes from, in order: the rules' `people:`, the directory's `mail`
(a real slapd), then the user name itself only when the OIDC sign-in vouched for it; never a name
a person could have chosen (a RADIUS User-Name, a password sign-in's typed name)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import SMTP_PASSWORD, SMTP_USER, SmtpServer
from slapd_district import (  # tests/slapd_district.py
    GROUPS,
    NEEDS_SLAPD,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SLAPD,
    Slapd,
    start_slapd,
)
from socialguard.identity.directory import Directory, open_directory
from socialguard.notify import Notifier
from socialguard.notify.people import PersonAddresses
from socialguard.overrides import Actor, open_store
from socialguard.policy import load_policy

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)

needs_slapd = NEEDS_SLAPD

# an entry whose user name is address-shaped and that has no `mail`: a password sign-in binds
# it as the person typed it, so the name is no address to write to
KIM = f"""\
dn: uid=kim@elsewhere.example,{PEOPLE}
objectClass: inetOrgPerson
uid: kim@elsewhere.example
cn: Kim Typed
sn: Typed
userPassword: kim-pw
"""


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if SLAPD is None or shutil.which("ldapmodify") is None:
        pytest.skip("needs slapd (apt-get install slapd ldap-utils)")
    server = start_slapd(tmp_path_factory.mktemp("slapd"), KIM)
    try:
        yield server
    finally:
        server.stop()


def policy_for(
    tmp_path: Path,
    *,
    username_claim: str = "email",
    radius: bool = False,
    slapd: Slapd | None = None,
    people: str = "{}",
    smtp: SmtpServer | None = None,
) -> Any:
    (tmp_path / "oidc.secret").write_text("a-client-secret\n")
    (tmp_path / "radius.secret").write_text("radius-secret\n")
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    (tmp_path / "pw").write_text(SMTP_PASSWORD + "\n")
    port = smtp.port if smtp else 25
    cert = f"    ca_file: {smtp.cert}\n" if smtp else ""
    text = f"""\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [127.0.0.0/8]
identity:
  networks: [127.0.0.0/8]
  unidentified: sign-in
  sign_in:
    portal: sign-in.district.example
    ldap: {"true" if slapd else "false"}
    oidc:
      issuer: https://login.district.example
      client_id: socialguard
      client_secret_file: oidc.secret
      username_claim: {username_claim}
"""
    if radius:
        text += "  radius:\n    listen: 127.0.0.1:1813\n    secret_file: radius.secret\n"
    if slapd:
        text += (
            f"  directory:\n    url: {slapd.ldap_url}\n    insecure_plaintext_on_loopback: true\n"
            f"    bind_dn: {SERVICE_DN}\n    bind_password_file: bind.pw\n"
            f"    user_base: {PEOPLE}\n    group_base: {GROUPS}\n"
        )
    text += (
        f"notifications:\n  email:\n    host: 127.0.0.1\n    port: {port}\n"
        f"    username: {SMTP_USER}\n    password_file: pw\n{cert}    from: sg@school.test\n"
        f"  people: {people}\n"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_policy(path)


def directory_of(policy: Any, tmp_path: Path) -> Directory:
    return open_directory(policy.identity.spec.directory, tmp_path)


def test_an_address_the_oidc_sign_in_vouched_for_is_used(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    addresses = PersonAddresses(lambda: policy, lambda: None)
    assert addresses.resolve("user:jdoe@district.example") == "jdoe@district.example"
    assert addresses.resolve("user:jdoe") is None, "not an address"
    assert addresses.resolve("ip:127.0.0.1") is None
    assert addresses.resolve("device:aa:bb:cc:dd:ee:ff") is None


def test_a_user_name_from_another_claim_is_not_an_address_vouched_for(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, username_claim="preferred_username")
    addresses = PersonAddresses(lambda: policy, lambda: None)
    assert addresses.resolve("user:jdoe@district.example") is None


def test_an_address_shaped_radius_user_name_is_believed_only_when_signed_in(
    tmp_path: Path,
) -> None:
    """RADIUS accounting's User-Name can be the outer identity the device chose."""
    policy = policy_for(tmp_path, radius=True)
    signed_in: set[str] = set()
    addresses = PersonAddresses(lambda: policy, lambda: None, signed_in.__contains__)
    assert addresses.resolve("user:mallory@attacker.example") is None
    signed_in.add("jdoe@district.example")
    assert addresses.resolve("user:jdoe@district.example") == "jdoe@district.example"


@needs_slapd
def test_the_directory_comes_before_the_name_and_a_typed_name_is_never_used(
    tmp_path: Path, slapd: Slapd
) -> None:
    policy = policy_for(tmp_path, slapd=slapd)
    directory = directory_of(policy, tmp_path)
    addresses = PersonAddresses(lambda: policy, lambda: directory)
    assert addresses.resolve("user:alice") == "alice@district.example"
    assert addresses.resolve("user:sam") is None, "in the directory without a mail"
    # the directory has this entry (a password sign-in can bind it as typed): not an address
    assert addresses.resolve("user:kim@elsewhere.example") is None
    # unknown to the directory, so only the OIDC sign-in can have named them
    assert addresses.resolve("user:jdoe@district.example") == "jdoe@district.example"


@needs_slapd
def test_the_rules_people_map_comes_before_the_directory(
    tmp_path: Path, slapd: Slapd, smtp: SmtpServer
) -> None:
    policy = policy_for(tmp_path, slapd=slapd, smtp=smtp, people="{alice: alice.home@school.test}")
    directory = directory_of(policy, tmp_path)
    store = open_store(tmp_path / "state" / "socialguard.db", clock=lambda: T0)
    notifier = Notifier(
        store, lambda: policy, "gw", clock=lambda: T0,
        addresses=PersonAddresses(lambda: policy, lambda: directory),
    )  # fmt: skip
    for user in ("alice", "bob"):
        rid = store.file_request(
            who=f"user:{user}", site="facebook.com", url="https://www.facebook.com/",
            rule_id="r", decision_id=f"d-{user}", reason="page", client_ip="10.1.2.3",
            actor=Actor(f"user:{user}", "10.1.2.3"), groups=("staff",),
        ).id  # fmt: skip
        store.deny_request(rid, "no", Actor("p", "gateway:pts/0"))
    assert notifier.run_once() == 2
    assert sorted(m.rcpt[0] for m in smtp.mails) == [
        "alice.home@school.test",  # the rules' people: wins over her directory mail
        "bob@district.example",  # bob's directory mail
    ]
