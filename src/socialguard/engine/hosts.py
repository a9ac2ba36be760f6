"""Host normalisation: one spelling per destination, so that no spelling slips past a rule.

Browsers accept many spellings of one host (`FACEBOOK.COM.`, `facebook.com:443`, `[::1]`,
`bücher.example`, even `2130706433` for 127.0.0.1). The rules are written in one canonical form —
lower-case A-labels without a trailing dot, IP addresses in their compressed form — and every host
the proxy sees is turned into that form before the engine looks at it. Anything that cannot be a
host name raises ValueError: the caller applies the policy's failure mode rather than guessing.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["domain_suffixes", "embedded_ipv4", "is_ip_literal", "normalise_host"]

_MAX_NAME = 253
_MAX_LABEL = 63
# A label as resolvers accept it: letters, digits, hyphen and underscore (real names carry `_`).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_IPV4_PART = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def normalise_host(raw: str) -> str:
    """Return the canonical form of a Host header, :authority, SNI or URL host.

    Strips surrounding space, brackets and a port; lower-cases; drops one trailing dot; turns
    Unicode labels into punycode (UTS #46 / IDNA 2008, as browsers do); turns IPv4 in any form
    a browser accepts (decimal, octal, hex, shortened) into dotted quad, and IPv6 into its
    compressed form (IPv6 spellings of an IPv4 address — mapped, NAT64, IPv4-compatible — into
    that IPv4: see embedded_ipv4). Raises ValueError when the result cannot be a host.
    """
    host = raw.strip()
    if not host:
        raise ValueError("empty host")
    host = _strip_port(host)
    if ":" in host:
        return _normalise_ipv6(host)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ValueError(f"not a host name: {raw!r}")
    if not host.isascii():
        host = _to_ascii(host, raw)
    ipv4 = _parse_ipv4(host)
    if ipv4 is not None:
        return ipv4
    _check_name(host, raw)
    return host


def is_ip_literal(host: str) -> bool:
    """True for a normalised host that is an IP address (it has no labels to match domains on)."""
    if ":" in host:
        return True
    last = host.rpartition(".")[2]
    return last.isdigit()


def domain_suffixes(host: str) -> list[str]:
    """`a.b.example` → [`a.b.example`, `b.example`, `example`]: the names a domain rule
    can match."""
    out = [host]
    i = host.find(".")
    while i >= 0:
        host = host[i + 1 :]
        out.append(host)
        i = host.find(".")
    return out


def _strip_port(host: str) -> str:
    """Remove `[...]` around IPv6 and a `:port` suffix, validating the port."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in host {host!r}")
        rest = host[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise ValueError(f"bad port in host {host!r}")
        return host[1:end]
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"bad port in host {host!r}")
        return name
    return host


def _normalise_ipv6(host: str) -> str:
    addr_text = host.split("%", 1)[0]  # a zone id says which interface, not which host
    try:
        addr = ipaddress.IPv6Address(addr_text)
    except ValueError as e:
        raise ValueError(f"not a host name or IPv6 address: {host!r}") from e
    embedded = embedded_ipv4(addr)
    return str(embedded) if embedded is not None else str(addr)


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 spelling reaches, if it is one of those that do.

    IPv4-mapped (`::ffff:a.b.c.d`: a dual-stack socket connects to the IPv4 host), the NAT64
    well-known prefix (`64:ff9b::a.b.c.d`, RFC 6052: a NAT64 gateway translates it to the IPv4
    host) and IPv4-compatible (`::a.b.c.d`, deprecated by RFC 4291 but still parsed). `::` and
    `::1` are not IPv4-compatible addresses.
    """
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return mapped
    value = int(addr)
    if addr in _NAT64 or (value >> 32 == 0 and value > 0xFFFF):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def _to_ascii(host: str, raw: str) -> str:
    """Unicode labels as the A-labels browsers send (`bücher.example` → `xn--bcher-kva.example`).

    UTS #46 non-transitional processing, as the WHATWG URL standard (browsers) and curl's libidn2
    do: `faß.de` is `xn--fa-hia.de`. Python's own `idna` codec is IDNA 2003 and gave `fass.de`,
    a different site, so a rule listing the one never met requests for the other. Code points
    IDNA 2008 leaves out but UTS #46 keeps (symbols such as `☃`) are encoded as browsers encode
    them, after the same mapping. Only non-ASCII names come here: the hot path stays as it was,
    and the `idna` tables are loaded on the first such name.
    """
    import idna

    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        pass
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
            for label in mapped.split(".")
        ]
    except (idna.IDNAError, UnicodeError) as e:
        raise ValueError(f"not a valid internationalised host name: {raw!r}") from e
    return ".".join(labels)


def _parse_ipv4(host: str) -> str | None:
    """Parse IPv4 the way browsers do (WHATWG URL): `2130706433`, `0x7f.1`, `0177.0.0.1`.

    Returns None when the host is a name; raises ValueError when it looks like an address but is
    not a valid one (a name whose last label is numeric cannot be resolved anyway).
    """
    parts = host.split(".")
    if not _IPV4_PART.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        raise ValueError(f"not a valid IPv4 address: {host!r}")
    numbers = [_ipv4_number(p, host) for p in parts]
    value = 0
    for n in numbers[:-1]:
        if n > 255:
            raise ValueError(f"not a valid IPv4 address: {host!r}")
        value = value * 256 + n
    last_bits = 8 * (5 - len(numbers))
    if numbers[-1] >= 1 << last_bits:
        raise ValueError(f"not a valid IPv4 address: {host!r}")
    value = (value << last_bits) + numbers[-1]
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(part: str, host: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        if not all(c in "01234567" for c in part):
            raise ValueError(f"not a valid IPv4 address: {host!r}")
        return int(part, 8)
    return int(part)


def _check_name(host: str, raw: str) -> None:
    if len(host) > _MAX_NAME:
        raise ValueError(f"host name longer than {_MAX_NAME} characters: {raw!r}")
    for label in host.split("."):
        if len(label) > _MAX_LABEL or not _LABEL.match(label):
            raise ValueError(f"not a valid host name: {raw!r}")
