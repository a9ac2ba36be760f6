"""Signed checkpoints: the chain's head, anchored somewhere the log's own directory is not.

A checkpoint says "node N had written up to seq S, whose hash was H, at time T", signed with an
Ed25519 key. It is written at rotation, every few minutes and when the proxy goes idle, to a second
sink (a separate directory, meant to be shipped off the box, and optionally syslog). A hash chain
alone cannot reveal a cut-off tail or a chain rewritten from some point on; a checkpoint held
elsewhere can.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import logging.handlers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from socialguard import fsmode
from socialguard.errors import AuditError

from .chain import encode_body
from .files import CHECKPOINT_PREFIX, safe_node


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (private key mode 0600, never overwriting); return the key
    id."""
    for p in (private_path, public_path):
        if p.exists():
            raise AuditError(f"{p}: already exists; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return key_id(key.public_key())


def ensure_keypair(private_path: Path, public_path: Path) -> tuple[str, bool]:
    """The signing key's id, making the pair first if the private key does not exist yet (as
    `socialguard run` makes its CA); True if it was made now. An existing private key whose public
    half is missing gets it written back."""
    if not private_path.exists():
        if public_path.exists():
            raise AuditError(
                f"{public_path}: a public key without its private key {private_path}; "
                "move it away or restore the private key"
            )
        return generate_keypair(private_path, public_path), True
    public = load_private_key(private_path).public_key()
    if not public_path.exists():
        public_path.write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return key_id(public), False


def key_id(public: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, carried in each checkpoint to say which key signed
    it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(source: Ed25519PrivateKey | Path | str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object or a PEM file."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    path = Path(source)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise AuditError(f"{path}: cannot read the signing key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (a private key file is accepted too)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AuditError(f"{path}: cannot read the key: {e.strerror}") from e
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as e:
            raise AuditError(f"{path}: not a PEM key") from e
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path}: not an Ed25519 key")
    return key


def checkpoint_file(checkpoint_dir: Path, node: str) -> Path:
    """The file one node's checkpoints are appended to."""
    return checkpoint_dir / f"{CHECKPOINT_PREFIX}{safe_node(node)}.jsonl"


def sign_checkpoint(body: dict[str, Any], key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """The checkpoint with `key` (key id) and `sig` (base64 Ed25519 over its canonical form)."""
    if key is None:
        return {**body, "key": None, "sig": None}
    signed = {**body, "key": key_id(key.public_key())}
    sig = key.sign(encode_body(signed))
    return {**signed, "sig": base64.b64encode(sig).decode("ascii")}


def signature_valid(checkpoint: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """Whether the checkpoint's signature verifies under `public`."""
    sig = checkpoint.get("sig")
    if not isinstance(sig, str):
        return False
    body = {k: v for k, v in checkpoint.items() if k != "sig"}
    try:
        public.verify(base64.b64decode(sig), encode_body(body))
    except (InvalidSignature, ValueError):
        return False
    return True


class CheckpointSink:
    """Appends signed checkpoints to a file (fsynced each time) and optionally to syslog."""

    def __init__(
        self,
        checkpoint_dir: Path,
        node: str,
        key: Ed25519PrivateKey | None,
        *,
        syslog_address: str | tuple[str, int] | None = None,
    ) -> None:
        fsmode.audit_dir(checkpoint_dir)
        self.path = checkpoint_file(checkpoint_dir, node)
        self._key = key
        self._syslog: logging.Logger | None = None
        if syslog_address is not None:
            handler = logging.handlers.SysLogHandler(address=syslog_address)
            handler.setFormatter(logging.Formatter("socialguard-audit: %(message)s"))
            self._syslog = logging.getLogger(f"socialguard.audit.checkpoints.{safe_node(node)}")
            self._syslog.propagate = False
            self._syslog.setLevel(logging.INFO)
            self._syslog.addHandler(handler)

    def emit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Sign and store one checkpoint; return it as written."""
        cp = sign_checkpoint(body, self._key)
        line = json.dumps(cp, separators=(",", ":"), ensure_ascii=False) + "\n"
        data = line.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, fsmode.AUDIT_FILE)
        try:
            end = os.fstat(fd).st_size
            try:
                n = os.write(fd, data)
                while n < len(data):
                    n += os.write(fd, data[n:])
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)  # no partial line for the next checkpoint to follow
                raise
        finally:
            os.close(fd)
        if self._syslog is not None:
            self._syslog.info(line.rstrip("\n"))
        return cp

    def close(self) -> None:
        if self._syslog is not None:
            for h in list(self._syslog.handlers):
                h.close()
                self._syslog.removeHandler(h)


def last_checkpoint(path: Path, node: str, chain: str | None = None) -> dict[str, Any] | None:
    """The newest checkpoint of `node` (of its chain `chain`, if given) in a checkpoint file: read
    from the end, so a years-long file costs a few blocks."""
    from .chains import chain_id_of

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with f:
        end = f.seek(0, os.SEEK_END)
        block, rest = 1 << 16, b""
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + rest
            lines = data.split(b"\n")
            rest = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                try:
                    cp = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(cp, dict) or cp.get("node") != node:
                    continue
                if chain is None or chain_id_of(cp) == chain:
                    return cp
            end = start
    return None


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint read back, with where it was found."""

    where: str
    data: dict[str, Any]


def read_checkpoints(source: Path) -> Iterator[StoredCheckpoint]:
    """Every checkpoint in a file or in the checkpoint files of a directory."""
    files = sorted(source.glob(f"{CHECKPOINT_PREFIX}*.jsonl")) if source.is_dir() else [source]
    for path in files:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise AuditError(f"{path}: cannot read checkpoints: {e.strerror}") from e
        with f:
            for n, line in enumerate(f, start=1):
                where = f"{path}:{n}"
                if not line.strip():
                    continue
                brace = line.find(b"{")  # a syslog collector's file: "<time> <host> <tag> {...}"
                try:
                    data = json.loads(line[max(brace, 0) :])
                except ValueError as e:
                    raise AuditError(f"{where}: checkpoint is not valid JSON") from e
                if not isinstance(data, dict):
                    raise AuditError(f"{where}: checkpoint is not a JSON object")
                yield StoredCheckpoint(where, data)
