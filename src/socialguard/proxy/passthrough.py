"""Passing a TLS connection through with mitmproxy's bare relay, decided before any TLS layer.

Decided in `tls_clienthello`, a passed-through connection keeps the two TLS layers mitmproxy had
already stacked for it (with stand-in connections), and every chunk relayed afterwards crosses
both, both ways: a keep-alive request over such a connection cost a quarter more proxy CPU than
under mitmproxy's own `--ignore-hosts`, which decides in `next_layer` and stacks nothing but the
relay. The addon's `next_layer` makes the same decision there, on the same ClientHello, and where
the connection is not decrypted puts the bare relay (`TCPLayer(ignore=True)`) in place.
"""

from __future__ import annotations

from mitmproxy import tls
from mitmproxy.proxy import layer, layers
from mitmproxy.proxy.layers.tls import ClientTLSLayer, ServerTLSLayer, parse_client_hello

__all__ = ["client_hello_ahead", "relay"]


def client_hello_ahead(nextlayer: layer.NextLayer) -> tls.ClientHello | None:
    """The whole ClientHello of a TCP connection mitmproxy is about to hand to its TLS layers,
    or None (not TLS, not TCP, or the hello is not complete yet: the TLS layers then decide)."""
    new = nextlayer.layer
    if not (isinstance(new, ServerTLSLayer) and isinstance(new.child_layer, ClientTLSLayer)):
        return None
    if nextlayer.context.client.transport_protocol != "tcp":
        return None
    try:
        return parse_client_hello(nextlayer.data_client())
    except ValueError:
        return None


def relay(nextlayer: layer.NextLayer) -> None:
    """Relay the connection's bytes as they are, with nothing decrypted or parsed."""
    nextlayer.layer = layers.TCPLayer(nextlayer.context, ignore=True)
