"""Real parts for the proxy's tests: a rules file, loopback upstreams with their own certificate,
and the real proxy (mitmproxy + addon, as `socialguard run` builds it) embedded in a thread.

Two test-only pieces steer the code under test without changing it: a `ManualClock` (the addon takes
"now" from it) and the `ToLoopback` addon, which points every upstream connection at the loopback
servers here (port 80 → the HTTP one, anything else → the HTTPS one), so that www.facebook.com
and www.example.org are answered locally whatever DNS says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from socialguard.proxy import ManualClock, ProxyConfig, ProxyMode, ensure_ca, serve

with warnings.catch_warnings():
    # mitmproxy's default addons import ldap3, which trips pyasn1's DeprecationWarning at import
    # time; not ours to fix, and harmless. Importing it here once keeps it out of the tests.
    warnings.simplefilter("ignore", DeprecationWarning)
    import mitmproxy.addons  # noqa: F401

UTC = dt.UTC
# Tuesday 1 December 2026 in America/Denver (UTC-7): 10:00 is school hours, 20:00 is not.
SCHOOL_HOURS = dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
EVENING = dt.datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
UPSTREAM_NAMES = ("www.example.org", "www.facebook.com", "www.instagram.com", "www.tiktok.com")

TEST_RULES = """\
district:
  name: Test District
  timezone: America/Denver
  policy_url: https://www.example.k12.test/board/policies/social-networking
schedules:
  school-hours:
    weekly:
      mon-fri: ["07:30-16:00"]
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: approved-district-pages
    description: Administratively approved district presence
    who: [staff]
    what:
      urls: ["https://www.facebook.com/ExampleSchoolDistrict"]
    action: allow
  - id: staff-social-school-hours
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
    bypass: [grant, emergency]
default: allow
tests:
  - {url: "https://www.facebook.com/", client: 127.0.0.1, at: "2026-12-01T10:00", expect: block}
  - {url: "https://www.facebook.com/", client: 127.0.0.1, at: "2026-12-01T20:00", expect: allow}
"""


# ------------------------------------------------------------------------- loopback upstreams


def make_self_signed(directory: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    """A self-signed certificate for `names` (the upstream's own, not the proxy CA's)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback upstream")])
    now = dt.datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with who it was for, so a test sees that the upstream was reached."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = f"upstream ok host={self.headers.get('Host')} path={self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(addr, _Echo)
        self.context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        # Handshake on the handler thread, not in the accept loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class _PlainServer(ThreadingHTTPServer):
    daemon_threads = True


@dataclass
class Upstreams:
    http_port: int
    https_port: int
    cert: Path
    servers: list[ThreadingHTTPServer] = field(default_factory=list)


@pytest.fixture(scope="session")
def upstream_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("upstream"), UPSTREAM_NAMES)


@pytest.fixture(scope="session")
def upstreams(upstream_cert: tuple[Path, Path]) -> Iterator[Upstreams]:
    cert, key = upstream_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    plain = _PlainServer(("127.0.0.1", 0), _Echo)
    tls = _TlsServer(("127.0.0.1", 0), ctx)
    for s in (plain, tls):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    ups = Upstreams(plain.server_address[1], tls.server_address[1], cert, [plain, tls])
    yield ups
    for s in ups.servers:
        s.shutdown()
        s.server_close()


class ToLoopback:
    """Test-only addon: every upstream connection goes to the loopback servers instead."""

    def __init__(self, ups: Upstreams) -> None:
        self.ups = ups
        self.connected: list[tuple[str, int]] = []

    def server_connect(self, data: Any) -> None:
        if data.server.error:
            return  # refused by socialguard: it must stay refused
        host, port = data.server.address[:2]
        self.connected.append((str(host), int(port)))
        target = self.ups.http_port if port == 80 else self.ups.https_port
        data.server.address = ("127.0.0.1", target)


# ------------------------------------------------------------------------- the embedded proxy


@dataclass
class RunningProxy:
    port: int
    ca: Path
    log_dir: Path
    rules: Path
    clock: ManualClock
    steer: ToLoopback
    master: Any
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def addon(self) -> Any:
        return self.master.addons.get("socialguard")

    def records(self) -> list[dict[str, Any]]:
        """Every record of the decision log so far (all files, in order)."""
        out: list[dict[str, Any]] = []
        for f in sorted(self.log_dir.glob("*.jsonl")):
            out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
        return out

    def record(self, decision_id: str) -> dict[str, Any]:
        found = [r for r in self.records() if r.get("decision_id") == decision_id]
        assert found, f"no decision log record with id {decision_id}"
        return found[0]

    def stop(self) -> None:
        self.master.shutdown()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the proxy did not stop"


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    certs = tmp_path_factory.mktemp("certs")
    ensure_ca(certs)
    return certs


@pytest.fixture
def start_proxy(
    tmp_path: Path, upstreams: Upstreams, ca_dir: Path
) -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def start(
        rules_text: str = TEST_RULES,
        at: dt.datetime = SCHOOL_HOURS,
        mode: ProxyMode = ProxyMode.REGULAR,
        **mitm: Any,
    ) -> RunningProxy:
        base = tmp_path / f"proxy{len(started)}"
        base.mkdir()
        rules = base / "rules.yaml"
        rules.write_text(rules_text)
        clock = ManualClock(at)
        steer = ToLoopback(upstreams)
        config = ProxyConfig(
            rules=rules,
            certs=ca_dir,
            state=base / "state",
            log_dir=base / "log",
            mode=mode,
            listen_port=0,
            node="test",
            mitmproxy_options={"ssl_insecure": True, **mitm},
        )
        ready = threading.Event()
        box: dict[str, Any] = {}

        def on_ready(addrs: list[tuple[str, int]]) -> None:
            box["port"] = addrs[0][1]
            ready.set()

        def run() -> None:
            try:
                asyncio.run(
                    serve(
                        config,
                        clock=clock,
                        extra_addons=[steer],
                        on_ready=on_ready,
                        on_master=lambda m: box.setdefault("master", m),
                        with_termlog=False,
                    )
                )
            except BaseException as e:  # reported to the test thread below
                box["error"] = e
                ready.set()

        thread = threading.Thread(target=run, name="test-proxy", daemon=True)
        thread.start()
        assert ready.wait(30), "the proxy did not start"
        if "error" in box:
            raise box["error"]
        proxy = RunningProxy(
            box["port"], ca_dir / "mitmproxy-ca-cert.pem", base / "log", rules, clock, steer,
            box["master"], thread,
        )  # fmt: skip
        started.append(proxy)
        return proxy

    yield start
    for p in started:
        p.stop()


# ------------------------------------------------------------------------- real clients


@dataclass
class CurlResult:
    status: int
    body: str
    headers: dict[str, str]


def curl(proxy: RunningProxy, url: str, *args: str, cacert: Path | None = None) -> CurlResult:
    """Real curl through the proxy; `cacert` is the only CA it trusts (default: the proxy's)."""
    with tempfile.TemporaryDirectory() as tmp:
        head_file, body_file = Path(tmp) / "head", Path(tmp) / "body"
        cmd = [
            "curl", "-sS", "--max-time", "15", "--noproxy", "", "-x", proxy.url,
            "--cacert", str(cacert or proxy.ca), "-D", str(head_file), "-o", str(body_file),
            url, *args,
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if res.returncode != 0:
            raise AssertionError(f"curl failed ({res.returncode}): {res.stderr.strip()}")
        head = head_file.read_text().replace("\r\n", "\n")
        body = body_file.read_text() if body_file.exists() else ""
    blocks = [b for b in head.split("\n\n") if b.startswith("HTTP/")]
    lines = blocks[-1].splitlines()  # the last response (after CONNECT's own)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return CurlResult(int(lines[0].split()[1]), body, headers)
