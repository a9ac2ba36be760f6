"""RADIUS accounting (RFC 2866): who the staff Wi-Fi's 802.1X sign-in says holds an address.

The Wi-Fi controller (or the RADIUS server, proxying accounting) sends an Accounting-Request when a
session starts, every interim interval, and when it stops. Start and Interim-Update bind
`Framed-IP-Address`, `Framed-IPv6-Address` (RFC 6911) and `Framed-IPv6-Prefix` (RFC 3162: the
prefix the device's SLAAC addresses come from), and `Calling-Station-Id` (the device's MAC), to
`User-Name` with the groups the server put in `Class` (or `Filter-Id`); Stop ends the binding,
but only the binding of the session that stops, so a late Stop never unbinds the address's next
holder. Accounting-On/Off (a controller restarting) end every binding that controller made.

A packet is believed only if its Request Authenticator is right (§3: MD5 over the packet with 16
zero octets in its place, then the shared secret); one that is not, or that does not parse, is
dropped unanswered and counted. Parsing is pure; `RadiusListener` is the asyncio UDP edge, run on
its own thread and event loop so a burst of accounting never delays a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from socialguard.engine.compiled import normalise_mac
from socialguard.engine.identity import SOURCE_RADIUS, Binding

__all__ = [
    "ACCOUNTING_REQUEST",
    "ACCOUNTING_RESPONSE",
    "Accounting",
    "AccountingRequest",
    "RadiusCounters",
    "RadiusError",
    "RadiusListener",
    "parse_accounting_request",
    "response_for",
]

log = structlog.get_logger(__name__)

ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5

USER_NAME = 1
NAS_IP_ADDRESS = 4
FRAMED_IP_ADDRESS = 8
FILTER_ID = 11
FRAMED_IPV6_PREFIX = 97
FRAMED_IPV6_ADDRESS = 168
CLASS = 25
SESSION_TIMEOUT = 27
CALLING_STATION_ID = 31
ACCT_STATUS_TYPE = 40
ACCT_SESSION_ID = 44
NAS_IDENTIFIER = 32

START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8

_HEADER = struct.Struct("!BBH16s")
_MIN_LENGTH, _MAX_LENGTH = 20, 4096
_ZERO_AUTH = bytes(16)


class RadiusError(ValueError):
    """A packet refused: malformed, not accounting, or its authenticator is wrong."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # bad_secret, malformed, not_accounting: the counter's label


@dataclass(frozen=True, slots=True)
class AccountingRequest:
    """The facts of one Accounting-Request that a binding needs."""

    identifier: int
    authenticator: bytes
    status: int
    user: str | None = None
    address: str | None = None
    mac: str | None = None
    session: str | None = None
    nas: str | None = None
    classes: tuple[str, ...] = ()
    filter_ids: tuple[str, ...] = ()
    session_timeout: int | None = None
    # every address the session holds: IPv4, IPv6, and IPv6 prefixes as NETWORK/LENGTH; the
    # first is `address`
    addresses: tuple[str, ...] = ()


def _ipv6_prefix(value: bytes) -> str | None:
    """Framed-IPv6-Prefix (RFC 3162 §2.3): reserved, length, then the prefix's significant octets.
    A /128 is an address. None when the value does not hold together."""
    if len(value) < 2 or value[1] > 128 or len(value) - 2 > 16:
        return None
    length = value[1]
    if len(value) - 2 < (length + 7) // 8:
        return None
    raw = value[2:].ljust(16, b"\x00")
    try:
        network = ipaddress.IPv6Network((raw, length), strict=False)
    except ValueError:
        return None
    if length == 128:
        return str(network.network_address)
    return str(network)


def _attributes(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(body):
        if i + 2 > len(body):
            raise RadiusError("malformed", "truncated attribute header")
        kind, length = body[i], body[i + 1]
        if length < 2 or i + length > len(body):
            raise RadiusError("malformed", f"attribute {kind} has a bad length {length}")
        out.append((kind, body[i + 2 : i + length]))
        i += length
    return out


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def parse_accounting_request(packet: bytes, secret: bytes) -> AccountingRequest:
    """Check and parse one Accounting-Request; raises RadiusError saying why it is refused."""
    if len(packet) < _MIN_LENGTH:
        raise RadiusError("malformed", f"{len(packet)} bytes is shorter than a RADIUS header")
    code, identifier, length, authenticator = _HEADER.unpack_from(packet)
    if length < _MIN_LENGTH or length > _MAX_LENGTH or length > len(packet):
        raise RadiusError("malformed", f"length field {length} does not fit the packet")
    packet = packet[:length]  # octets past Length are padding (RFC 2865 §3)
    if code != ACCOUNTING_REQUEST:
        raise RadiusError("not_accounting", f"code {code} is not an Accounting-Request")
    expected = hashlib.md5(packet[:4] + _ZERO_AUTH + packet[20:] + secret).digest()
    if not hmac.compare_digest(expected, authenticator):
        raise RadiusError("bad_secret", "Request Authenticator does not match the shared secret")
    facts: dict[str, object] = {}
    classes: list[str] = []
    filter_ids: list[str] = []
    addresses: list[str] = []
    status = None
    for kind, value in _attributes(packet[20:]):
        if kind == ACCT_STATUS_TYPE and len(value) == 4:
            status = int.from_bytes(value, "big")
        elif kind == USER_NAME:
            facts["user"] = _text(value)
        elif kind == FRAMED_IP_ADDRESS and len(value) == 4:
            addresses.append(str(ipaddress.IPv4Address(value)))
        elif kind == FRAMED_IPV6_ADDRESS and len(value) == 16:
            addresses.append(str(ipaddress.IPv6Address(value)))
        elif kind == FRAMED_IPV6_PREFIX and (prefix := _ipv6_prefix(value)) is not None:
            addresses.append(prefix)
        elif kind == CALLING_STATION_ID:
            # a phone number or a name is not a MAC, so not one for the inventory
            with contextlib.suppress(ValueError):
                facts["mac"] = normalise_mac(_text(value))
        elif kind == ACCT_SESSION_ID:
            facts["session"] = _text(value)
        elif kind == NAS_IP_ADDRESS and len(value) == 4:
            facts.setdefault("nas", str(ipaddress.IPv4Address(value)))
        elif kind == NAS_IDENTIFIER:
            facts["nas"] = _text(value)
        elif kind == CLASS:
            classes.append(_text(value))
        elif kind == FILTER_ID:
            filter_ids.append(_text(value))
        elif kind == SESSION_TIMEOUT and len(value) == 4:
            facts["session_timeout"] = int.from_bytes(value, "big")
    if status is None:
        raise RadiusError("malformed", "no Acct-Status-Type")
    unique = tuple(dict.fromkeys(addresses))
    return AccountingRequest(
        identifier,
        authenticator,
        status,
        address=unique[0] if unique else None,
        addresses=unique,
        classes=tuple(classes),
        filter_ids=tuple(filter_ids),
        **facts,  # type: ignore[arg-type]
    )


def response_for(request: AccountingRequest, secret: bytes) -> bytes:
    """The Accounting-Response (no attributes) acknowledging `request` (§3)."""
    header = struct.pack("!BBH", ACCOUNTING_RESPONSE, request.identifier, 20)
    auth = hashlib.md5(header + request.authenticator + secret).digest()
    return header + auth


@dataclass
class RadiusCounters:
    """Packets seen, by outcome: what /metrics and the operator's logs report."""

    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


class Accounting:
    """Accounting-Requests → binding changes (address → Binding, or None for ended).

    Holds which session and controller made each binding, so a Stop ends only its own session's
    bindings, and Accounting-On/Off only its controller's. A Stop ends every address its session
    bound, also those it no longer lists (an Interim-Update that brought a new IPv6 address).
    """

    def __init__(self, *, lifetime_s: float, groups_from: str = "class") -> None:
        self.lifetime_s = lifetime_s
        self.groups_from = groups_from
        self._sessions: dict[str, tuple[str | None, str | None]] = {}  # address → (session, nas)
        # (session, nas) → the addresses it bound: sessions with an Acct-Session-Id only
        self._bound_by: dict[tuple[str | None, str | None], set[str]] = {}

    def load(self, bindings: Mapping[str, tuple[str | None, str | None]]) -> None:
        """Sessions of bindings restored from the store at start."""
        for address, session in bindings.items():
            self._bind(address, session)

    def _bind(self, address: str, session: tuple[str | None, str | None]) -> None:
        self._unbind(address)
        self._sessions[address] = session
        if session[0] is not None:
            self._bound_by.setdefault(session, set()).add(address)

    def _unbind(self, address: str) -> None:
        old = self._sessions.pop(address, None)
        if old is not None and (addresses := self._bound_by.get(old)) is not None:
            addresses.discard(address)
            if not addresses:
                del self._bound_by[old]

    def session_of(self, address: str) -> tuple[str | None, str | None] | None:
        return self._sessions.get(address)

    def apply(self, req: AccountingRequest, now: float) -> dict[str, Binding | None]:
        """The binding changes one request makes (empty when it changes nothing)."""
        if req.status in (ACCOUNTING_ON, ACCOUNTING_OFF):
            ended = [a for a, (_, nas) in self._sessions.items() if nas == req.nas]
            for a in ended:
                self._unbind(a)
            return dict.fromkeys(ended)
        addresses = req.addresses or ((req.address,) if req.address else ())
        if not addresses:
            return {}
        if req.status == STOP:
            stopped: dict[str, Binding | None] = {}
            also = self._bound_by.get((req.session, req.nas), ()) if req.session else ()
            for address in (*addresses, *also):
                known = self._sessions.get(address)
                if known is None or (
                    req.session is not None and known[0] not in (None, req.session)
                ):
                    continue  # a late Stop of an earlier session: the address has a new holder
                self._unbind(address)
                stopped[address] = None
            return stopped
        if req.status not in (START, INTERIM) or not req.user:
            return {}
        groups = frozenset(req.classes if self.groups_from == "class" else req.filter_ids)
        lifetime = self.lifetime_s
        if req.session_timeout:
            lifetime = min(lifetime, float(req.session_timeout))
        bound: dict[str, Binding | None] = {}
        for address in addresses:
            self._bind(address, (req.session, req.nas))
            bound[address] = Binding(
                address=address,
                source=SOURCE_RADIUS,
                user=req.user,
                groups=groups,
                mac=req.mac,
                start=now,
                until=now + lifetime,
            )
        return bound


Publish = Callable[[dict[str, Binding | None], dict[str, tuple[str | None, str | None]]], None]


class _Protocol(asyncio.DatagramProtocol):
    """Parse every datagram of a burst, publish the burst's changes once, then answer them all:
    a controller that got its Accounting-Response knows the change is in force."""

    def __init__(self, listener: RadiusListener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None
        self._changes: dict[str, Binding | None] = {}
        self._answers: list[tuple[bytes, tuple[str, int]]] = []
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        li = self.listener
        try:
            req = parse_accounting_request(data, li.secret)
        except RadiusError as e:
            li.counters.refuse(e.reason)
            li.refused(e, addr)
            return
        li.counters.accepted += 1
        self._changes.update(li.accounting.apply(req, li.clock()))
        self._answers.append((response_for(req, li.secret), addr))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        changes, self._changes = self._changes, {}
        answers, self._answers = self._answers, []
        li = self.listener
        if changes:
            sessions = {a: li.accounting.session_of(a) for a in changes}
            li.publish(changes, {a: s for a, s in sessions.items() if s is not None})
        assert self.transport is not None
        for payload, addr in answers:
            self.transport.sendto(payload, addr)


class RadiusListener:
    """A UDP listener for accounting, on its own thread and event loop."""

    def __init__(  # noqa: PLR0917 - the address, the secret, and where changes go
        self,
        host: str,
        port: int,
        secret: bytes,
        accounting: Accounting,
        publish: Publish,
        clock: Callable[[], float],
    ) -> None:
        self.host, self.port = host, port
        self.secret = secret
        self.accounting = accounting
        self.publish = publish
        self.clock = clock
        self.counters = RadiusCounters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._last_refusal_logged = -1.0

    def refused(self, e: RadiusError, addr: tuple[str, int]) -> None:
        """Log a refusal, at most once a second (a flood must not flood the log too)."""
        now = self.clock()
        if now - self._last_refusal_logged >= 1.0:
            self._last_refusal_logged = now
            log.warning("radius_refused", reason=e.reason, error=str(e), sender=addr[0])

    def start(self) -> RadiusListener:
        """Bind and serve; raises OSError now if the address cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="socialguard-radius", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        log.info("radius_listening", host=self.host, port=self.port)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            transport, _ = loop.run_until_complete(
                loop.create_datagram_endpoint(
                    lambda: _Protocol(self), local_addr=(self.host, self.port)
                )
            )
        except BaseException as e:
            self._error = e
            self._ready.set()
            loop.close()
            return
        self.port = transport.get_extra_info("sockname")[1]  # the kernel's choice for port 0
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            transport.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
        self._thread = None
