"""What each connection is, settled before a byte of it is relayed: mitmproxy's choice, reviewed.

mitmproxy's `next_layer` addon looks at a connection's first bytes and picks the layer that
handles it: TLS, HTTP, or a raw TCP relay for anything else. Two of its choices would let a
connection past the filter:

- It takes a TLS handshake only when the record-layer version bytes are `03 00`..`03 03`. TLS
  servers ignore those bytes on the first record (OpenSSL checks the major byte, Go's crypto/tls
  almost nothing), so a ClientHello sent as `16 03 04 …` was relayed raw: the client completed
  its handshake with the real origin, under the origin's own certificate, never decided.
- A raw relay carries whatever the client sends, to wherever it asked. No hook can stop one
  that has started (`flow.kill()` in `tcp_start` is not honoured by mitmproxy's TCP layer).

So `review()` settles the choice, whichever order the hooks run in (embedded, socialguard's addon
comes after mitmproxy's next_layer; under `mitmdump -s` a script's hooks come before it): a
ClientHello under any record version is rewritten to the standard version bytes (receivers
ignore them, and they are not part of the handshake transcript) and handed back to mitmproxy,
which then treats it as the TLS it is (a hello still arriving is waited for, `AwaitHello`); and a
raw relay is put to the policy first (`decide_stream`), and replaced by a refusal unless its
destination would be passed through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import TCPLayer

__all__ = ["MAX_HELLO", "AwaitHello", "Refused", "normalise_hello", "review"]

# A ClientHello longer than this is not waited for (real ones are a few KiB, post-quantum key
# shares included); the stream is then decided as an opaque one.
MAX_HELLO = 1 << 16
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_STANDARD_VERSION = b"\x03\x01"


class Refused(layer.Layer):
    """Closes the connection at once: what the policy does not let through is never relayed."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        self._handle_event = self._closed  # type: ignore[method-assign]
        if self.context.server.connected:
            yield commands.CloseConnection(self.context.server)
        yield commands.CloseConnection(self.context.client)

    def _closed(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from ()


class AwaitHello(layer.Layer):
    """The next layer while a ClientHello is still arriving: it collects the client's bytes until
    the hello is complete (or MAX_HELLO bytes came, or they are not one), then asks for the next
    layer again, on all of them. So a hello split over several segments is judged whole, whatever
    order the next_layer hooks run in."""

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._seen: list[events.Event] = []

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        self._seen.append(event)
        client = self.context.client
        if isinstance(event, events.ConnectionClosed) and event.connection == client:
            self._handle_event = _ignore  # type: ignore[method-assign]
            yield commands.CloseConnection(client)
            return
        if not isinstance(event, events.DataReceived) or event.connection != client:
            return
        data = _client_data(self._seen, client)
        try:
            hello = normalise_hello(data)
        except ValueError:
            hello = data  # not TLS after all: decided as what it is
        if hello is None and len(data) <= MAX_HELLO:
            return
        self.context.layers.remove(self)  # the stack mitmproxy matches on is as it was
        child = layer.NextLayer(self.context)
        self._handle_event = child.handle_event  # type: ignore[method-assign]
        for seen in _with_client_data(self._seen, client, hello or data):
            yield from child.handle_event(seen)


def review(
    nextlayer: layer.NextLayer,
    ask_mitmproxy: Callable[[layer.NextLayer], None],
    stream_passes: Callable[[Context], bool],
) -> None:
    """Settle `nextlayer.layer`, mitmproxy's own choice reviewed.

    `ask_mitmproxy` runs mitmproxy's next_layer addon (if it has not chosen yet: under
    `mitmdump -s` a script's hooks run before it; and again after a ClientHello's record versions
    were made standard); `stream_passes` decides, and records, an opaque stream: True relays it.
    """
    context = nextlayer.context
    if context.client.transport_protocol != "tcp":
        return
    data = nextlayer.data_client()
    if data[:1] == bytes((_HANDSHAKE,)) and not starts_like_tls_record(data):
        try:
            hello = normalise_hello(data)
        except ValueError:
            hello = b""  # not TLS after all: an opaque stream, decided below
        if hello is None and len(data) <= MAX_HELLO:
            nextlayer.layer = AwaitHello(context)
            return
        if hello:
            nextlayer.events[:] = _with_client_data(nextlayer.events, context.client, hello)
            nextlayer.layer = None
    if nextlayer.layer is None:
        ask_mitmproxy(nextlayer)
    if isinstance(nextlayer.layer, TCPLayer) and not stream_passes(context):
        nextlayer.layer = Refused(context)


def normalise_hello(data: bytes) -> bytes | None:
    """`data` with the record-layer version of every record of its ClientHello set to `03 01`.

    None while the ClientHello is incomplete; ValueError when the bytes are not a TLS handshake
    starting with a ClientHello. What follows the ClientHello's last record is left as it came.
    """
    out = bytearray(data)
    hello = bytearray()
    for start, body in _handshake_records(data):
        out[start + 1 : start + 3] = _STANDARD_VERSION
        hello += body
        if len(hello) >= 4:
            if hello[0] != _CLIENT_HELLO:
                raise ValueError("a TLS handshake that does not start with a ClientHello")
            if len(hello) >= 4 + int.from_bytes(hello[1:4], "big"):
                return bytes(out)
    return None


def _handshake_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, body) of each complete handshake record at the start of `data`, any version."""
    offset = 0
    while len(data) >= offset + 5:
        if data[offset] != _HANDSHAKE:
            raise ValueError("not a TLS handshake record")
        size = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if size == 0:
            raise ValueError("an empty TLS record")
        if len(data) < offset + 5 + size:
            return
        yield offset, data[offset + 5 : offset + 5 + size]
        offset += 5 + size


def _client_data(seen: list[events.Event], client: object) -> bytes:
    return b"".join(
        e.data for e in seen if isinstance(e, events.DataReceived) and e.connection == client
    )


def _with_client_data(seen: list[events.Event], client: Any, data: bytes) -> list[events.Event]:
    """`seen` with the client's bytes replaced by `data` (one event where the first one was)."""
    out: list[events.Event] = []
    placed = False
    for event in seen:
        if isinstance(event, events.DataReceived) and event.connection == client:
            if not placed:
                out.append(events.DataReceived(client, data))
                placed = True
            continue
        out.append(event)
    return out


def _ignore(event: events.Event) -> layer.CommandGenerator[None]:
    yield from ()
