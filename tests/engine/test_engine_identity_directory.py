"""The rules file's `identity: directory:` section: validated like the rest, errors located and
naming the field; passwords never configured to cross a network in the clear."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from socialguard.engine import CompiledPolicy
from socialguard.errors import PolicyError

MakePolicy = Callable[..., CompiledPolicy]

DIRECTORY = """
identity:
  directory:
    url: {url}
    bind_dn: cn=socialguard,ou=services,dc=district,dc=example
    bind_password_file: bind.pw
    user_base: ou=people,dc=district,dc=example
    group_base: ou=groups,dc=district,dc=example
{extra}  groups:
    teachers: [staff]
"""


def directory(url: str = "ldaps://dc1.district.example", extra: str = "") -> str:
    return DIRECTORY.format(url=url, extra=extra)


def test_a_directory_over_ldaps_loads(make_policy: MakePolicy) -> None:
    policy = make_policy(directory(), files={"bind.pw": "pw\n"})
    spec = policy.identity.spec.directory
    assert spec is not None
    assert (spec.url, spec.user_attribute, spec.group_member_attribute) == (
        "ldaps://dc1.district.example",
        "uid",
        "member",
    )
    assert policy.identity.group_map == {"teachers": ("staff",)}


def test_starttls_over_ldap_loads(make_policy: MakePolicy) -> None:
    extra = "    starttls: true\n    user_attribute: sAMAccountName\n    member_of_attribute: memberOf\n"
    policy = make_policy(
        directory("ldap://dc1.district.example:389", extra), files={"bind.pw": "pw"}
    )
    assert policy.identity.spec.directory is not None


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        ("ldap://dc1.district.example", "", "would send passwords in the clear"),
        (
            "ldap://10.0.0.5",
            "    insecure_plaintext_on_loopback: true\n",
            "insecure_plaintext_on_loopback: 10.0.0.5 is not a loopback address",
        ),
        ("ldaps://dc1.district.example", "    starttls: true\n", "ldaps:// is TLS already"),
        ("http://dc1.district.example", "", "not an ldap:// or ldaps:// URL"),
        ("ldaps://", "", "names no host"),
        ("ldaps://dc1:99999", "", "out of range"),
        ("ldaps://dc1", "    timeout: 0\n", "timeout 0"),
        ("ldaps://dc1", "    group_cache: soon\n", "not a lifetime"),
        ("ldaps://dc1", "    user_attribute: 'uid)(x'\n", "not an LDAP attribute name"),
        ("ldaps://dc1", "    user_filter: objectClass=person\n", "not an LDAP filter"),
        ("ldaps://dc1", "    group_member_attribute: memberUid\n", "member"),
        ("ldaps://dc1", "    nesting_depth: 0\n", "greater than or equal to 1"),
        ("ldaps://dc1", "    bind_pasword_file: x\n", "bind_pasword_file"),
    ],
)
def test_a_bad_directory_is_a_located_error(
    make_policy: MakePolicy, url: str, extra: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=r"policy.yaml:\d+: identity\.directory") as e:
        make_policy(directory(url, extra), files={"bind.pw": "pw"})
    assert message in str(e.value)


def test_plain_ldap_to_loopback_is_allowed_only_when_the_flag_says_so(
    make_policy: MakePolicy,
) -> None:
    with pytest.raises(PolicyError, match="in the clear"):
        make_policy(directory("ldap://127.0.0.1:3389"), files={"bind.pw": "pw"})
    extra = "    insecure_plaintext_on_loopback: true\n"
    make_policy(directory("ldap://127.0.0.1:3389", extra), files={"bind.pw": "pw"})


def test_a_missing_password_file_is_a_located_error(make_policy: MakePolicy) -> None:
    with pytest.raises(
        PolicyError,
        match=r"policy.yaml:\d+: identity\.directory\.bind_password_file: .*'bind.pw' not found",
    ):
        make_policy(directory())


def test_a_missing_ca_file_is_a_located_error(make_policy: MakePolicy) -> None:
    with pytest.raises(PolicyError, match=r"identity\.directory\.ca_file: .*'ca.pem' not found"):
        make_policy(directory(extra="    ca_file: ca.pem\n"), files={"bind.pw": "pw"})
