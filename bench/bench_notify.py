"""Notification figure: how long from a staff member sending the block page's access request form
to the approver's mail arriving at a live SMTP server (issue 22; budget ~2 s).

A real `socialguard run` process, a real SMTP server (aiosmtpd, STARTTLS and AUTH required, its
own certificate) and a real client through the proxy. Each round opens the block page, then times
the form POST until the mail is in the server's hands. Baseline: the same mail sent straight to
the same server with smtplib (connect, STARTTLS, AUTH, send) — the floor any delivery pays; the
ratio says what the outbox, the worker's wake-up and the proxy's form handling add. Bounded:
fixed rounds, loopback only, a temporary directory.

    .venv/bin/python bench/bench_notify.py [--quick]
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import random
import re
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

QUICK = "--quick" in sys.argv
ROUNDS = 5 if QUICK else 15
BUDGET_S = 2.0
APPROVER = "principal@bench.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Arrivals:
    """The SMTP server's handler: when each mail arrived (monotonic)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.times.append(time.monotonic())
        self.event.set()
        return "250 OK"


def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    return AuthResult(
        success=isinstance(data, LoginPassword) and (data.login, data.password) == (b"sg", b"pw")
    )


RULES = """\
district: {{name: Bench District, timezone: America/Denver}}
groups:
  staff: {{networks: [127.0.0.0/8]}}
categories:
  social: {{domains: [facebook.com]}}
rules:
  - id: staff-social
    description: no social networking
    who: [staff]
    what: {{categories: [social]}}
    action: block
    bypass: [grant]
default: allow
overrides: {{requests_per_day: 100, requests_per_day_unidentified: 1000}}
notifications:
  email:
    host: 127.0.0.1
    port: {port}
    username: sg
    password_file: pw
    ca_file: {cert}
    from: sg@bench.test
  recipients:
    - {{when: [request_filed], groups: [staff], email: [{approver}]}}
"""


def start_proxy(work: Path, smtp_port: int, cert: Path) -> tuple[subprocess.Popen[bytes], int]:
    (work / "pw").write_text("pw\n")
    rules = work / "rules.yaml"
    rules.write_text(RULES.format(port=smtp_port, cert=cert, approver=APPROVER))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
         "--listen", f"127.0.0.1:{port}", "--certs", str(work / "certs"),
         "--state", str(work / "state"), "--log-dir", str(work / "log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the proxy did not start within 60 s")


def direct_send(port: int, cert: Path) -> float:
    """Seconds for smtplib to hand one mail to the server (STARTTLS, AUTH): the baseline."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "sg@bench.test", APPROVER, "baseline"
    mail.set_content("baseline\n")
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(cert)))
        smtp.login("sg", "pw")
        smtp.send_message(mail)
    return time.monotonic() - start


def file_request(client: httpx.Client, n: int, arrivals: Arrivals) -> float:
    """Open the block page, send the form; seconds from the POST to the mail's arrival."""
    page = client.get("https://www.facebook.com/", headers={"Accept": "text/html"})
    token = re.search(r'action="/\.socialguard/request".*?name="token" value="([^"]+)"', page.text)
    if token is None:
        raise SystemExit(f"no request form on the block page (status {page.status_code})")
    # A random pause: each round would otherwise start just after the worker's last wake-up and
    # always wait the store poll's whole period (0.5 s), a phase lock no real request has.
    time.sleep(random.uniform(0.0, 0.5))
    arrivals.event.clear()
    seen = len(arrivals.times)
    start = time.monotonic()
    sent = client.post(
        "https://www.facebook.com/.socialguard/request",
        data={"token": token.group(1), "reason": f"bench round {n}"},
    )
    if sent.status_code != 200:
        raise SystemExit(f"the form was refused: {sent.status_code}")
    deadline = start + 30
    while len(arrivals.times) <= seen:
        if not arrivals.event.wait(max(0.0, deadline - time.monotonic())):
            raise SystemExit("no mail within 30 s")
        arrivals.event.clear()
    return arrivals.times[seen] - start


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cert, key = self_signed(work)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        arrivals = Arrivals()
        smtp_port = free_port()
        controller = Controller(
            arrivals, hostname="127.0.0.1", port=smtp_port, tls_context=tls,
            require_starttls=True, authenticator=auth, auth_required=True, auth_require_tls=True,
        )  # fmt: skip
        controller.start()
        proc, port = start_proxy(work, smtp_port, cert)
        try:
            baseline, latencies = [], []
            ca = str(work / "certs" / "mitmproxy-ca-cert.pem")
            with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=ca, timeout=30) as client:
                for n in range(ROUNDS):  # interleaved: both see the machine's load alike
                    baseline.append(direct_send(smtp_port, cert))
                    latencies.append(file_request(client, n, arrivals))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            controller.stop()
    med, worst = statistics.median(latencies), max(latencies)
    base = statistics.median(baseline)
    print(f"rounds: {ROUNDS}  (budget: a filed request's mail at the relay within {BUDGET_S} s)")
    print(
        f"{'form POST -> mail at the SMTP server, median':<46} {med * 1000:>9.0f} ms | "
        f"{'direct smtplib send, median':<30} {base * 1000:>9.1f} ms | ratio {med / base:6.1f}"
    )
    print(
        f"{'form POST -> mail at the SMTP server, worst':<46} {worst * 1000:>9.0f} ms | "
        f"{'budget':<30} {BUDGET_S * 1000:>9.0f} ms | ratio {worst / BUDGET_S:6.2f}"
    )
    return 0 if worst <= BUDGET_S else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own deprecation chatter
    sys.exit(main())
