"""A real OpenLDAP `slapd` on loopback with a small district tree, for the directory's tests.

Shared by test directories (tests/identity, the sign-in page's tests): import `start_slapd` and
the names below. The server is the distribution's own `slapd` (Debian: `apt-get install slapd
ldap-utils`), configured by a slapd.conf in a temporary directory, loaded with `slapadd`, run in
the foreground on two loopback ports (ldap:// with StartTLS, and ldaps://) with a test CA, and
killed at the end. Nothing of the system's slapd (its config, its database, its daemon) is used.

The tree (dc=district,dc=example):
- ou=people: alice and bob (teachers), carol (an administrator), sam (a student), dave (at the
  bottom of a long chain of nested groups), `lab(1)` (a name with filter characters in it), and
  two entries named `pat` (one under ou=contractors): an ambiguous name; zed, whose entry has a
  second uid, aaa-admin.
- ou=groups (groupOfNames, `member`): teachers ⊂ staff (nested), admins, students, a cycle
  loop-a ⊂ loop-b ⊂ loop-a (sam is in loop-a), and chain-1 ⊂ chain-2 ⊂ … ⊂ chain-12 (dave in
  chain-1).
- erin, whose groups only her own `memberOf` attribute names (as Active Directory keeps it):
  teachers, and cn=outside in ou=other-groups, which is not under the group base.
- ou=services: cn=socialguard, the service account (reads everything; people may only bind).

The server is configured with `allow bind_anon_dn`, as some directories are: a bind with a DN and
an empty password succeeds there as an anonymous bind. That is the trap the directory source must
not fall into, and this server lets a test prove it does not.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None)
# tests that start a directory (slapd) and change it (ldapmodify) skip, naming the packages
NEEDS_SLAPD = pytest.mark.skipif(
    SLAPD is None or shutil.which("ldapmodify") is None,
    reason="needs slapd (apt-get install slapd ldap-utils)",
)
SLAPADD = shutil.which("slapadd") or (
    "/usr/sbin/slapadd" if Path("/usr/sbin/slapadd").exists() else None
)

SUFFIX = "dc=district,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=socialguard,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-pw-for-tests"
MANAGER_DN = f"cn=manager,{SUFFIX}"  # the tree's root: a test changes the directory as it
MANAGER_PASSWORD = "manager-pw-for-tests"
PASSWORDS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "sam": "sam-pw",
    "dave": "dave-pw",
    "lab(1)": "lab-pw",
    "pat": "pat-pw",
    "erin": "erin-pw",
    "zed": "zed-pw",
}
CHAIN = 12  # chain-1 ⊂ … ⊂ chain-12


@dataclass
class Slapd:
    """A running slapd: its URLs, the test CA that signed its certificate, and the process."""

    ldap_url: str
    ldaps_url: str
    ca_file: Path
    process: subprocess.Popen[bytes]
    log: Path
    files: dict[str, Path] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _person(uid: str, cn: str, ou: str = PEOPLE, mail: bool = True) -> str:
    lines = [
        f"dn: uid={_rdn(uid)},{ou}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {cn}",
        f"sn: {cn.rsplit(maxsplit=1)[-1]}",
        f"displayName: {cn}",
        f"userPassword: {PASSWORDS[uid]}",
    ]
    if mail:
        lines.append(f"mail: {uid}@district.example")
    return "\n".join(lines) + "\n"


def _rdn(value: str) -> str:
    """An RDN value as a DN needs it (RFC 4514): only the characters this tree uses."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")


# memberOf as Active Directory (or OpenLDAP's memberof overlay) keeps it, declared here so that
# the tree can carry it without the overlay
MEMBER_OF_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.99.1 NAME 'memberOf'
  EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
objectclass ( 1.3.6.1.4.1.4203.666.99.2 NAME 'districtMember' AUXILIARY MAY memberOf )
"""


def _group(cn: str, members: list[str]) -> str:
    lines = [f"dn: cn={cn},{GROUPS}", "objectClass: groupOfNames", f"cn: {cn}"]
    lines += [f"member: {m}" for m in members]
    return "\n".join(lines) + "\n"


def district_ldif() -> str:
    """The district tree as LDIF, for slapadd."""

    def person(uid: str) -> str:
        return f"uid={_rdn(uid)},{PEOPLE}"

    def group(cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: district\n"
        "o: Test District\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=contractors,{PEOPLE}\nobjectClass: organizationalUnit\nou: contractors\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: socialguard\nuserPassword: {SERVICE_PASSWORD}\n",
        _person("alice", "Alice Adams"),
        _person("bob", "Bob Brown"),
        _person("carol", "Carol Clark"),
        _person("sam", "Sam Student", mail=False),
        _person("dave", "Dave Deep"),
        _person("lab(1)", "Lab One"),
        _person("zed", "Zed Two-Names").replace("uid: zed\n", "uid: zed\nuid: aaa-admin\n"),
        _person("pat", "Pat Person"),
        _person("pat", "Pat Other", ou=f"ou=contractors,{PEOPLE}"),
        _person("erin", "Erin Member")
        + "objectClass: districtMember\n"
        + f"memberOf: {group('teachers')}\n"
        + f"memberOf: cn=outside,ou=other-groups,{SUFFIX}\n",
        f"dn: ou=other-groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: other-groups\n",
        f"dn: cn=outside,ou=other-groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: outside\n"
        f"member: {person('erin')}\n",
        _group("teachers", [person("alice"), person("bob")]),
        _group("staff", [group("teachers"), person("carol")]),
        _group("admins", [person("carol")]),
        _group("students", [person("sam")]),
        _group("loop-a", [person("sam"), group("loop-b")]),
        _group("loop-b", [group("loop-a")]),
        _group("lab", [person("lab(1)")]),
        _group("chain-1", [person("dave")]),
    ]
    parts += [_group(f"chain-{i}", [group(f"chain-{i - 1}")]) for i in range(2, CHAIN + 1)]
    return "\n".join(parts)


def _slapd_conf(tmp: Path, cert: Path, key: Path, ca: Path) -> str:
    return f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {tmp}/memberof.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {tmp}/slapd.pid
argsfile {tmp}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
allow bind_anon_dn

database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{MANAGER_DN}"
rootpw {MANAGER_PASSWORD}
directory {tmp}/db
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by self read
  by anonymous auth
  by * none
"""


def ldapmodify(server: Slapd, ldif: str) -> None:
    """Change the running directory as its manager (ldap-utils' ldapmodify)."""
    subprocess.run(
        ["ldapmodify", "-x", "-H", server.ldap_url, "-D", MANAGER_DN, "-w", MANAGER_PASSWORD],
        input=ldif,
        text=True,
        capture_output=True,
        timeout=30,
        check=True,
    )


def make_ca(directory: Path, name: str = "Test District CA") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
    )
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(200):  # bounded: 20 s
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"slapd did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


def start_slapd(tmp: Path, extra_ldif: str = "") -> Slapd:
    """Start slapd with the district tree (and `extra_ldif`, entries a test adds) in `tmp`, a
    fresh directory. The caller stops it."""
    assert SLAPD is not None and SLAPADD is not None, "slapd and slapadd are needed"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "db").mkdir()
    ca, cert, key = make_ca(tmp / "tls")
    (tmp / "memberof.schema").write_text(MEMBER_OF_SCHEMA)
    conf = tmp / "slapd.conf"
    conf.write_text(_slapd_conf(tmp, cert, key, ca))
    ldif = tmp / "district.ldif"
    ldif.write_text(district_ldif() + ("\n" + extra_ldif if extra_ldif else ""))
    subprocess.run(
        [SLAPADD, "-f", str(conf), "-l", str(ldif)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    plain, tls = free_tcp_port(), free_tcp_port()
    log = tmp / "slapd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                SLAPD, "-f", str(conf), "-d", "0",
                "-h", f"ldap://127.0.0.1:{plain}/ ldaps://127.0.0.1:{tls}/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Slapd(
        ldap_url=f"ldap://127.0.0.1:{plain}",
        ldaps_url=f"ldaps://127.0.0.1:{tls}",
        ca_file=ca,
        process=process,
        log=log,
    )
    try:
        _wait_listening(plain, process, log)
        _wait_listening(tls, process, log)
    except BaseException:
        server.stop()
        raise
    return server
