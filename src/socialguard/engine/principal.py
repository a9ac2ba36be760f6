"""Who is asking: a client address (plus MAC and proxy-auth user when known) → a Principal.

Membership comes from three sources, all declared in the rules file's `groups:` — networks the
address falls in, the device inventory (by MAC first, then address), and user names (the proxy-auth
user, or else the inventory's owner of the device) — and then flows up through `include:` so that
a member of `staff` is a member of `all-staff` too. A client may be in several groups.
"""

from __future__ import annotations

import ipaddress

from .compiled import CompiledPolicy, normalise_mac
from .identity import Binding, policy_groups
from .model import Principal

__all__ = ["normalise_client_ip", "resolve_principal"]


def normalise_client_ip(client_ip: str) -> str:
    """The address as the policy sees it: IPv4-mapped IPv6 (dual-stack sockets) becomes IPv4."""
    text = client_ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def resolve_principal(
    policy: CompiledPolicy,
    client_ip: str,
    *,
    user: str | None = None,
    mac: str | None = None,
    binding: Binding | None = None,
) -> Principal:
    """Resolve a client to the groups the policy places it in. Raises ValueError on a bad
    address.

    `binding` is the person an identity source bound the address to (engine/identity.py): that
    person is the principal, with the policy groups their user name and their source's groups
    map onto, and not the groups of the network they happen to be on. An address the sources
    cover with no one bound gets its network's groups only if `identity.unidentified` is staff.
    """
    ip_text = normalise_client_ip(client_ip)
    addr = ipaddress.ip_address(ip_text)
    mac_text = normalise_mac(mac) if mac else None
    identity = policy.identity
    source = None
    direct: set[str] = set()
    if binding is not None and binding.user is not None and user is None:
        user = binding.user
        source = binding.source
        direct.update(policy_groups(binding.groups, identity.group_map))
        if mac_text is None and binding.mac:
            mac_text = binding.mac
    elif identity.spec.unidentified == "staff" or user is not None or not identity.covers(addr):
        for network, group in policy.group_networks.entries:
            if addr.version == network.version and addr in network:
                direct.add(group)
    device = policy.devices.find(ip_text, mac_text)
    device_id = None
    if device is not None:
        device_id = device.id
        direct.update(device.groups)
        if user is None:
            user = device.owner  # the device's owner, when no one signed in to the proxy
    if user is not None:
        direct.update(policy.group_users.get(user, ()))
    groups: set[str] = set()
    parents = policy.group_parents
    for g in direct:
        groups.update(parents.get(g, (g,)))
    return Principal(
        client_ip=ip_text,
        groups=frozenset(groups),
        user=user,
        device=device_id,
        mac=mac_text,
        source=source,
    )
