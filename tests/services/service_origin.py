"""A loopback origin for the services tests: one TLS server answering for every name a service's
page needs, run inside the test's network namespace.

Usage: python service_origin.py CONFIG.json
CONFIG: {"events": PATH, "addr": "127.0.0.10", "port": 443, "cert": PATH, "key": PATH}

`https://www.facebook.com/` is an HTML page that loads its style sheet from static.xx.fbcdn.net,
its photo from scontent.xx.fbcdn.net and its script from connect.facebook.net, as the real one
does; every other path answers a small body of the type its extension says. Each request is
appended to the events file as one JSON line (host, path), so the test sees what reached the
origin. Prints "ready" once bound; runs until terminated.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOCK = threading.Lock()

PAGE = """<!doctype html>
<html><head><title>Facebook</title>
<link rel="stylesheet" href="https://static.xx.fbcdn.net/rsrc/app.css">
<script src="https://connect.facebook.net/en_US/sdk.js"></script>
</head><body><p id="feed">the feed</p>
<img id="photo" src="https://scontent.xx.fbcdn.net/v/photo.png">
</body></html>
"""
CSS = "#feed { color: rgb(1, 2, 3); }\n"
JS = "window.sdkLoaded = true;\n"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def body_for(host: str, path: str) -> tuple[bytes, str]:
    if path.endswith(".css"):
        return CSS.encode(), "text/css"
    if path.endswith(".js"):
        return JS.encode(), "application/javascript"
    if path.endswith(".png"):
        return PNG, "image/png"
    if host == "www.facebook.com":
        return PAGE.encode(), "text/html; charset=utf-8"
    return f"<p>origin {host} ok</p>".encode(), "text/html; charset=utf-8"


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        config: dict[str, Any] = json.load(f)
    events = config["events"]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0]
            with LOCK, open(events, "a", encoding="utf-8") as out:
                out.write(json.dumps({"host": host, "path": self.path}) + "\n")
            body, ctype = body_for(host, self.path)
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET
        daemon_threads = True

    server = Server((config["addr"], config["port"]), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(config["cert"], config["key"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
