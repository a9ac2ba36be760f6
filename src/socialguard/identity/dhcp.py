"""DHCP lease files: which device (MAC) holds which address, and until when.

dnsmasq writes one line a lease, `EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID` (expiry 0: never), and
rewrites the file on every change. ISC Kea's memfile backend appends CSV rows
(`address,hwaddr,client_id,valid_lifetime,expire,subnet_id,...,state,...`): the last row for an
address is its lease, and a released lease is a row with valid_lifetime 0 (or a state other than
0, default). A lease binds the address to the MAC until it expires, for the device inventory; it
names no person.

Parsing is pure (text in, bindings out); `LeaseWatcher` re-reads a file when its size, time or inode
changes, on its own thread, so a 50,000-lease file never stalls the event loop.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from socialguard.engine.compiled import normalise_mac
from socialguard.engine.identity import SOURCE_DHCP, Binding

__all__ = ["LeaseWatcher", "parse_dnsmasq", "parse_kea", "parse_leases"]

log = structlog.get_logger(__name__)

_MAX_LEASE_FILE = 64 * 1024 * 1024


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_dnsmasq(text: str) -> list[Binding]:
    """dnsmasq's lease file → bindings (IPv4 leases; IPv6 lines carry no MAC and are skipped)."""
    out: list[Binding] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] == "duid":
            continue
        try:
            expiry = int(parts[0])
            mac = normalise_mac(parts[1])
        except ValueError:
            continue
        address = _address(parts[2])
        if address is None:
            continue
        out.append(Binding(address, SOURCE_DHCP, mac=mac, until=float(expiry) if expiry else None))
    return out


def parse_kea(text: str) -> list[Binding]:
    """Kea's memfile CSV (DHCPv4) → bindings: the last row for each address wins."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        return []
    col = {name: i for i, name in enumerate(header)}
    need = ("address", "hwaddr", "valid_lifetime", "expire")
    if any(n not in col for n in need):
        raise ValueError(
            f"not a Kea lease file: the header lacks {[n for n in need if n not in col]}"
        )
    state_col = col.get("state")
    leases: dict[str, Binding | None] = {}
    for row in rows:
        if len(row) < len(header) - 2:  # trailing optional columns may be absent
            continue
        address = _address(row[col["address"]])
        if address is None:
            continue
        try:
            lifetime = int(row[col["valid_lifetime"]])
            expire = int(row[col["expire"]])
            state = int(row[state_col]) if state_col is not None and row[state_col] else 0
            mac = normalise_mac(row[col["hwaddr"]])
        except (ValueError, IndexError):
            continue
        if lifetime == 0 or state != 0:
            leases[address] = None  # released, declined or reclaimed
        else:
            leases[address] = Binding(address, SOURCE_DHCP, mac=mac, until=float(expire))
    return [b for b in leases.values() if b is not None]


def parse_leases(text: str, fmt: str) -> list[Binding]:
    return parse_kea(text) if fmt == "kea" else parse_dnsmasq(text)


class LeaseWatcher:
    """Re-read lease files when they change, and hand every lease they hold to `publish`."""

    def __init__(
        self,
        files: Sequence[tuple[Path, str]],
        publish: Callable[[list[Binding]], None],
        *,
        interval_s: float = 0.5,
    ) -> None:
        self.files = files
        self.publish = publish
        self.interval_s = interval_s
        self._stamps: dict[Path, tuple[int, int, int] | None] = {}
        self._leases: dict[Path, list[Binding]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def check(self) -> bool:
        """Read what changed since the last check; publish when anything did."""
        changed = False
        for path, fmt in self.files:
            try:
                st = os.stat(path)
                stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamps.get(path, ()):
                continue
            self._stamps[path] = stamp
            changed = True
            if stamp is None:
                self._leases[path] = []
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read(_MAX_LEASE_FILE)
                self._leases[path] = parse_leases(text, fmt)
            except (OSError, ValueError) as e:
                self.failures += 1
                log.error("dhcp_leases_unreadable", file=str(path), error=str(e))
                continue
            log.info("dhcp_leases_read", file=str(path), leases=len(self._leases[path]))
        if changed:
            self.publish([b for leases in self._leases.values() for b in leases])
        return changed

    def start(self) -> LeaseWatcher:
        self.check()
        self._thread = threading.Thread(target=self._run, name="socialguard-dhcp", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as e:  # a watcher that dies would freeze the leases silently
                self.failures += 1
                log.error("dhcp_watch_failed", error=str(e))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
