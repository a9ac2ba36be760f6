"""The host's neighbour table (IP → MAC), read off the hot path, for matching the device inventory.

On a gateway in the clients' segment the kernel already knows each client's MAC address. Reading it
costs a file read (`/proc/net/arp`, IPv4) or a process (`ip neigh`, both families), far too slow
per request, so `NeighbourTable` refreshes a dict in a background thread and the addon only does a
dict lookup. A MAC is a hint, not proof (it can be spoofed): the inventory treats it as one more
key.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PROC_ARP = Path("/proc/net/arp")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NO_MAC = "00:00:00:00:00:00"
_ARP_FLAG_COMPLETE = 0x2


def parse_proc_net_arp(text: str) -> dict[str, str]:
    """Parse /proc/net/arp; incomplete entries (no MAC yet) are left out."""
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        ip, flags, mac = parts[0], parts[2], parts[3].lower()
        try:
            complete = int(flags, 16) & _ARP_FLAG_COMPLETE
        except ValueError:
            continue
        if complete and mac != _NO_MAC and _MAC.match(mac):
            out[ip] = mac
    return out


def parse_ip_neigh(text: str) -> dict[str, str]:
    """Parse `ip neigh show` (IPv4 and IPv6); entries without lladdr (FAILED...) are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if "lladdr" not in parts:
            continue
        i = parts.index("lladdr")
        if i + 1 < len(parts) and _MAC.match(parts[i + 1].lower()):
            out[parts[0]] = parts[i + 1].lower()
    return out


def read_neighbours() -> dict[str, str]:
    """Read the kernel's neighbour table now: `ip neigh` where available, else /proc/net/arp."""
    table: dict[str, str] = {}
    with contextlib.suppress(OSError):
        table.update(parse_proc_net_arp(PROC_ARP.read_text(encoding="ascii", errors="replace")))
    ip = shutil.which("ip")
    if ip:
        try:
            res = subprocess.run(
                [ip, "neigh", "show"], capture_output=True, text=True, timeout=5, check=False
            )
            table.update(parse_ip_neigh(res.stdout))
        except (OSError, subprocess.SubprocessError):
            pass
    return table


class NeighbourTable:
    """IP → MAC, refreshed every `interval_s` by a daemon thread; `lookup` never blocks on I/O."""

    def __init__(
        self, interval_s: float = 5.0, reader: Callable[[], Mapping[str, str]] = read_neighbours
    ) -> None:
        self._interval_s = interval_s
        self._reader = reader
        self._table: Mapping[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def lookup(self, ip: str) -> str | None:
        return self._table.get(ip)

    def refresh(self) -> None:
        try:
            self._table = dict(self._reader())
        except Exception as e:  # a broken reader must not stop the refresher; the old table stays
            log.warning("neighbour_table_refresh_failed", error=str(e))

    def start(self) -> None:
        if self._thread is not None:
            return
        self.refresh()
        self._thread = threading.Thread(
            target=self._run, name="socialguard-neighbours", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.refresh()
