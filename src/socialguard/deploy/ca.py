"""The interception CA: create it in mitmproxy's confdir layout, describe it, export it for devices.

The proxy decrypts only what the policy needs to see (a block page, a path rule); for that every
district device must trust one CA, distributed by Group Policy, MDM or the ChromeOS admin console.
The files are written by mitmproxy's own `CertStore.create_store`, so the proxy (which loads
`--certs` as mitmproxy's confdir) finds exactly what it expects; no crypto is re-implemented here.

Exports never contain the private key: that stays in `mitmproxy-ca.pem` (and `mitmproxy-ca.p12`),
mode 0600, readable by the service user only.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from socialguard import fsmode
from socialguard.errors import SocialGuardError

__all__ = [
    "CA_FILES",
    "SECRET_FILES",
    "CaError",
    "CaInfo",
    "ExportFormat",
    "export_ca",
    "init_ca",
    "read_ca",
]

BASENAME = "mitmproxy"  # mitmproxy.options.CONF_BASENAME: the proxy looks for these names
KEY_SIZE = 2048  # mitmproxy.options.KEY_SIZE
CA_FILES = (
    f"{BASENAME}-ca.pem",  # key + certificate: what the proxy loads (secret)
    f"{BASENAME}-ca.p12",  # key + certificate, PKCS#12 (secret)
    f"{BASENAME}-ca-cert.pem",  # certificate only, for devices
    f"{BASENAME}-ca-cert.cer",  # same bytes, the extension Android expects
    f"{BASENAME}-ca-cert.p12",  # certificate only, PKCS#12, for Windows
    f"{BASENAME}-dhparam.pem",
)
SECRET_FILES = (f"{BASENAME}-ca.pem", f"{BASENAME}-ca.p12")
CERT_FILE = f"{BASENAME}-ca-cert.pem"
# A fixed namespace so that the same CA always exports the same profile UUIDs: MDMs then
# replace the profile instead of stacking copies.
PROFILE_NAMESPACE = uuid.UUID("6f1d3c52-8a0e-4d7b-9a57-5c0f8e2b7a11")


DEFAULT_ORGANIZATION = "socialguard"
DEFAULT_COMMON_NAME = "socialguard interception CA"


class CaError(SocialGuardError):
    """The CA could not be created, read or exported as asked."""


class ExportFormat(StrEnum):
    """What `ca export` can write; every one holds the certificate only, never the key."""

    PEM = "pem"  # Linux, Firefox, ChromeOS admin console
    DER = "der"  # Windows Group Policy ("Trusted Root Certification Authorities")
    P12 = "p12"  # Windows / tools that want PKCS#12
    MOBILECONFIG = "mobileconfig"  # macOS / iOS configuration profile for MDM


@dataclass(frozen=True, slots=True)
class CaInfo:
    """What `ca show` prints about the CA's certificate."""

    path: Path
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256: str  # colon-separated upper-case hex, as browsers and MDMs display it
    key: str  # e.g. "RSA 2048"

    def expired(self, now: datetime) -> bool:
        return not (self.not_before <= now <= self.not_after)


def existing_ca_files(certs_dir: Path) -> list[Path]:
    """The CA files already present in `certs_dir`."""
    return [certs_dir / name for name in CA_FILES if (certs_dir / name).exists()]


def init_ca(
    certs_dir: Path,
    *,
    force: bool = False,
    organization: str | None = None,
    common_name: str | None = None,
    now: datetime | None = None,
) -> tuple[CaInfo, Path | None]:
    """Create a new CA in `certs_dir`; returns its description and where a replaced CA was kept.

    An existing CA is never silently replaced: every device trusts it, so replacing it breaks every
    intercepted connection until the new one is distributed. Without `force` this raises CaError.
    With `force` the old files are moved to `certs_dir/replaced-<UTC time>/` (not deleted), and only
    after the new CA has been fully written beside them. A name not given (None) is the replaced
    CA's own (its O= and CN=, which devices show), else DEFAULT_ORGANIZATION / DEFAULT_COMMON_NAME:
    a renewal keeps the district's name rather than falling back to socialguard's.
    """
    from mitmproxy.certs import CertStore

    existing = existing_ca_files(certs_dir)
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise CaError(
            f"{certs_dir} already holds a CA ({names}); every device trusting it would have to be "
            "given the new one. Pass --force to replace it (the old files are kept in a "
            "replaced-<time>/ folder)."
        )
    old_org, old_cn = _previous_names(certs_dir) if existing else (None, None)
    organization = organization or old_org or DEFAULT_ORGANIZATION
    common_name = common_name or old_cn or DEFAULT_COMMON_NAME
    try:
        fsmode.private_dir(certs_dir)
        staging = Path(tempfile.mkdtemp(prefix=".ca-new-", dir=certs_dir))
    except OSError as e:
        raise CaError(f"{certs_dir}: cannot write the CA here: {e.strerror or e}") from e
    try:
        CertStore.create_store(
            staging, BASENAME, KEY_SIZE, organization=organization, cn=common_name
        )
        for name in SECRET_FILES:
            os.chmod(staging / name, 0o600)
        backup = _set_aside(existing, certs_dir, now or datetime.now(UTC)) if existing else None
        for name in CA_FILES:
            os.replace(staging / name, certs_dir / name)
    except OSError as e:
        raise CaError(f"{certs_dir}: cannot write the CA here: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return read_ca(certs_dir), backup


def _previous_names(certs_dir: Path) -> tuple[str | None, str | None]:
    """The O= and CN= of the CA in `certs_dir`, where its certificate can be read."""
    try:
        subject = _load_cert(certs_dir).subject
    except (CaError, OSError, ValueError):
        return None, None

    def first(oid: x509.ObjectIdentifier) -> str | None:
        values = subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    return first(x509.NameOID.ORGANIZATION_NAME), first(x509.NameOID.COMMON_NAME)


def _set_aside(files: list[Path], certs_dir: Path, now: datetime) -> Path:
    """Move the current CA files into a dated folder beside them; returns that folder."""
    stamp = f"replaced-{now.strftime('%Y%m%dT%H%M%SZ')}"
    backup = certs_dir / stamp
    for n in range(2, 1000):  # never merge into (and overwrite) an earlier backup
        if not backup.exists():
            break
        backup = certs_dir / f"{stamp}-{n}"
    backup.mkdir(mode=0o700)
    for path in files:
        os.replace(path, backup / path.name)
    return backup


def _load_cert(certs_dir: Path) -> x509.Certificate:
    path = certs_dir / CERT_FILE
    if not path.exists():
        raise CaError(f"{path}: no CA certificate here; create one with `socialguard ca init`")
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as e:
        raise CaError(f"{path}: not a PEM certificate ({e})") from e


def _key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    size = getattr(key, "key_size", None)
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
    return f"{kind} {size}" if size else kind


def fingerprint_sha256(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def read_ca(certs_dir: Path) -> CaInfo:
    """Describe the CA certificate in `certs_dir`."""
    cert = _load_cert(certs_dir)
    return CaInfo(
        path=certs_dir / CERT_FILE,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=fingerprint_sha256(cert),
        key=_key_description(cert),
    )


def export_ca(certs_dir: Path, fmt: ExportFormat) -> bytes:
    """The CA certificate (never the key) in the format a device-management tool wants."""
    cert = _load_cert(certs_dir)
    if fmt is ExportFormat.PEM:
        return cert.public_bytes(serialization.Encoding.PEM)
    if fmt is ExportFormat.DER:
        return cert.public_bytes(serialization.Encoding.DER)
    if fmt is ExportFormat.P12:
        return pkcs12.serialize_key_and_certificates(
            name=b"socialguard CA",
            key=None,
            cert=cert,
            cas=None,
            encryption_algorithm=serialization.NoEncryption(),
        )
    return mobileconfig(cert)


def mobileconfig(cert: x509.Certificate) -> bytes:
    """An Apple configuration profile installing the CA as a trusted root (macOS, iOS, iPadOS).

    UUIDs derive from the certificate's fingerprint, so re-exporting the same CA yields the same
    profile (an MDM replaces it rather than installing a second copy).
    """
    fp = fingerprint_sha256(cert)
    cn_attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(cn_attrs[0].value) if cn_attrs else "socialguard CA"
    payload_uuid = str(uuid.uuid5(PROFILE_NAMESPACE, "payload:" + fp))
    profile_uuid = str(uuid.uuid5(PROFILE_NAMESPACE, "profile:" + fp))
    profile = {
        "PayloadContent": [
            {
                "PayloadCertificateFileName": "socialguard-ca.cer",
                "PayloadContent": cert.public_bytes(serialization.Encoding.DER),
                "PayloadDescription": "Adds the district filter's CA as a trusted root.",
                "PayloadDisplayName": cn,
                "PayloadIdentifier": f"org.socialguard.ca.{payload_uuid}",
                "PayloadType": "com.apple.security.root",
                "PayloadUUID": payload_uuid,
                "PayloadVersion": 1,
            }
        ],
        "PayloadDescription": (
            "Lets the district's network filter show its block page on HTTPS sites the board "
            "policy restricts."
        ),
        "PayloadDisplayName": f"{cn} (district network filter)",
        "PayloadIdentifier": f"org.socialguard.profile.{profile_uuid}",
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": profile_uuid,
        "PayloadVersion": 1,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
