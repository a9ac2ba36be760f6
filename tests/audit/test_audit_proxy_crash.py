"""SIGKILL of the real proxy under load: every block page a client received has its record on disk.

`socialguard run` is started as its own process on a loopback port; client threads request a blocked
site through it as fast as they can and keep the reference id of every block page they receive. The
proxy is killed with SIGKILL while they run. Each received id must then be in the decision log, and
`audit verify` must pass on what remains. Blocked requests are answered by the proxy itself, so no
upstream is involved and nothing leaves loopback.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from socialguard.audit.chain import unseal
from socialguard.audit.files import iter_lines, list_log_files
from socialguard.audit.verify import verify_log

pytestmark = pytest.mark.e2e

RULES = """\
district:
  name: Test District
  timezone: America/Denver
  policy_url: https://www.example.k12.test/board/policies/social-networking
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: staff-social-always
    description: Individual use of social networking is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
default: allow
"""

REFERENCE = re.compile(rb"\b[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxy(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    args = [
        "run",
        "--rules",
        str(rules),
        "--listen",
        f"127.0.0.1:{port}",
        "--state",
        str(tmp_path / "state"),
        "--log-dir",
        str(tmp_path / "log"),
        "--certs",
        str(tmp_path / "certs"),
        "--node",
        "crash",
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "socialguard", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def blocked_once(port: int) -> bytes | None:
    """One request through the proxy; the block page's reference id, or None if it failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "http://www.facebook.com/", headers={"Host": "www.facebook.com"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    m = REFERENCE.search(body) if resp.status == 403 else None
    return m.group(0) if m else None


def logged_ids(log_dir: Path) -> set[bytes]:
    out = set()
    for lf in list_log_files(log_dir):
        for _, raw in iter_lines(lf.path):
            if raw.endswith(b"\n"):
                rid = unseal(raw)[0].get("decision_id")
                if rid:
                    out.add(rid.encode())
    return out


def test_sigkill_of_the_proxy_under_load_loses_no_record_of_a_received_response(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = start_proxy(tmp_path, port)
    try:
        for _ in range(300):  # bounded wait for start-up (up to ~60 s on a loaded machine)
            if proc.poll() is not None:
                pytest.fail("the proxy exited during start-up")
            if blocked_once(port):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the proxy did not answer on its port")

        received: list[bytes] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client() -> None:
            for _ in range(5000):  # bounded per thread
                if stop.is_set():
                    return
                rid = blocked_once(port)
                if rid is None:
                    if proc.poll() is not None:
                        return
                    continue
                with lock:
                    received.append(rid)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(600):  # bounded: until enough responses came back
            with lock:
                if len(received) >= 400:
                    break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: the clients are still sending
        proc.wait(timeout=20)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGKILL
    assert len(received) >= 400
    missing = set(received) - logged_ids(tmp_path / "log")
    assert not missing
    result = verify_log(tmp_path / "log", checkpoints=tmp_path / "checkpoints")
    assert result.ok, result.first_problems()
