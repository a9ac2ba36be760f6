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

So `review()` runs after mitmproxy has picked (socialguard's addon comes after mitmproxy's in the
chain, embedded and under `mitmdump -s` alike): a ClientHello under any record version is
rewritten to the standard version bytes (receivers ignore them, and they are not part of the
handshake transcript) and handed back to mitmproxy, which then treats it as the TLS it is; and a
raw relay is put to the policy first (`decide_stream`), and replaced by a refusal unless its
destination would be passed through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import TCPLayer

__all__ = ["MAX_HELLO", "Refused", "normalise_hello", "review"]

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


def review(
    nextlayer: layer.NextLayer,
    ask_mitmproxy: Callable[[layer.NextLayer], None],
    stream_passes: Callable[[Context], bool],
) -> None:
    """Settle `nextlayer.layer` after mitmproxy's own next_layer addon has chosen it.

    `ask_mitmproxy` runs mitmproxy's choice again (after a ClientHello's record versions were
    made standard); `stream_passes` decides, and records, an opaque stream: True lets it relay.
    """
    context = nextlayer.context
    if context.client.transport_protocol != "tcp":
        return
    data = nextlayer.data_client()
    if data[:1] == bytes((_HANDSHAKE,)) and not starts_like_tls_record(data):
        try:
            hello = normalise_hello(data)
        except ValueError:
            hello = None  # not TLS after all: an opaque stream, decided below
        else:
            if hello is None:
                if len(data) <= MAX_HELLO:
                    nextlayer.layer = None  # wait for the rest of the ClientHello
                    return
            else:
                _replace_client_data(nextlayer, hello)
                nextlayer.layer = None
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


def _replace_client_data(nextlayer: layer.NextLayer, data: bytes) -> None:
    """The client's buffered bytes, replaced by `data` (one event where the first one was)."""
    client = nextlayer.context.client
    replaced: list[events.Event] = []
    placed = False
    for event in nextlayer.events:
        if isinstance(event, events.DataReceived) and event.connection == client:
            if not placed:
                replaced.append(events.DataReceived(client, data))
                placed = True
            continue
        replaced.append(event)
    nextlayer.events[:] = replaced
