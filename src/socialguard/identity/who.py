"""Who holds an address now, and which source says so: what `socialguard who` prints.

It reads what the proxy reads: the RADIUS and sign-in page bindings in `<state>/identity.db`
(which the proxy writes before it answers the packet or the sign-in) and the lease files the
rules name, and resolves the principal with the same `resolve_principal` the proxy calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from socialguard.engine.compiled import CompiledPolicy
from socialguard.engine.identity import Binding
from socialguard.engine.model import Principal
from socialguard.engine.principal import normalise_client_ip, resolve_principal

from .dhcp import parse_leases
from .store import BINDINGS_DB, BindingStore

__all__ = ["WhoAnswer", "who"]


@dataclass(frozen=True, slots=True)
class WhoAnswer:
    address: str
    person: Binding | None  # the person an identity source bound the address to
    lease: Binding | None  # the DHCP lease on the address (its device's MAC)
    principal: Principal  # who the proxy takes the client to be, groups and all


def who(policy: CompiledPolicy, address: str, state: Path, now: float) -> WhoAnswer:
    """Raises ValueError on a bad address."""
    address = normalise_client_ip(address)
    person = None
    spec = policy.identity.spec
    if spec.radius is not None or spec.sign_in is not None:
        store = BindingStore.open_read_only(state / BINDINGS_DB)
        if store is not None:
            try:
                person = store.find(address, now)
            finally:
                store.close()
    lease = None
    rules_dir = policy.source_files[0].parent if policy.source_files else Path()
    for source in spec.dhcp:
        path = rules_dir / source.leases
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for b in parse_leases(text, source.format):
            if b.address == address and b.live(now):
                lease = b
    mac = lease.mac if lease is not None else None
    principal = resolve_principal(policy, address, mac=mac, binding=person)
    return WhoAnswer(address, person, lease, principal)
