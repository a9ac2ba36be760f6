"""Upstream servers for the namespace tests, run inside the upstream namespace.

Usage: python netns_servers.py CONFIG.json

CONFIG: {"events": PATH,
         "https": [{"name", "addr", "port", "cert", "key"}...],   (no cert/key: plain HTTP)
         "udp": [{"addr", "port"}...]}

Every HTTPS request and every UDP datagram is appended to the events file as one JSON line
(kind, name/port, the peer's address), so a test can tell what reached the upstream and from whom.
Prints "ready" once every socket is bound; runs until terminated.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOCK = threading.Lock()


def record(events: str, **event: Any) -> None:
    with LOCK, open(events, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def https_server(spec: dict[str, Any], events: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            record(events, kind="https", name=spec["name"], peer=self.client_address[0],
                   host=self.headers.get("Host"), path=self.path)  # fmt: skip
            body = f"upstream {spec['name']} ok\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    family = socket.AF_INET6 if ":" in spec["addr"] else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    server = Server((spec["addr"], spec["port"]), Handler)
    if spec.get("cert"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(spec["cert"], spec["key"])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server


def udp_listener(spec: dict[str, Any], events: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in spec["addr"] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((spec["addr"], spec["port"]))
    return sock


def serve_udp(sock: socket.socket, events: str) -> None:
    port = sock.getsockname()[1]
    while True:
        data, peer = sock.recvfrom(2048)
        record(events, kind="udp", port=port, peer=peer[0], size=len(data))


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    events = config["events"]
    servers = [https_server(s, events) for s in config.get("https", [])]
    sockets = [udp_listener(s, events) for s in config.get("udp", [])]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for sock in sockets:
        threading.Thread(target=serve_udp, args=(sock, events), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
