"""The proxy never connects to itself, nor to the gateway's own services (issue 17, item 2).

Aimed at its own port, under any spelling of its address, the proxy used to connect to itself
again and again (~19,000 connections from one request). And whatever listens on the gateway's
loopback (the admin endpoint's /healthz and /metrics, a resolver, a database) was reachable
through it. The harness steers every upstream connection to the recording origin *after*
socialguard decided, so what the origin sees is what the proxy would have connected to; the
real loop is tried against `socialguard run` itself, unsteered.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_RULES, curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

SPELLINGS = [
    "127.0.0.1",
    "[::ffff:127.0.0.1]",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "LOCALHOST",
    "localhost.",
    "0.0.0.0",
    "[::1]",
    "[::]",
    "[::127.0.0.1]",
    "[64:ff9b::127.0.0.1]",
]


def _decisions(proxy: Any) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("type") == "decision"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_proxys_own_port_is_refused_under_any_spelling(
    start_proxy: Any, origin: Any, spelling: str
) -> None:
    proxy = start_proxy()
    res = curl(proxy, f"http://{spelling}:{proxy.port}/loop")
    assert res.status == 403
    assert proxy.steer.connected == [], "the proxy opened a connection for it"
    assert not origin.saw(b"/loop")
    [record] = _decisions(proxy)
    assert record["action"] == "block"


@pytest.mark.parametrize("spelling", ["127.0.0.1", "[::ffff:127.0.0.1]", "LOCALHOST", "0.0.0.0"])
def test_a_gateway_service_is_not_reachable_through_the_proxy(
    start_proxy: Any, origin: Any, spelling: str
) -> None:
    proxy = start_proxy()
    res = curl(proxy, f"http://{spelling}:9180/metrics")
    assert res.status == 403
    assert not origin.saw(b"/metrics")
    assert proxy.steer.connected == []
    assert [r["action"] for r in _decisions(proxy)] == ["block"]


def test_a_connect_to_a_gateway_service_is_refused(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"CONNECT 127.0.0.1:9180 HTTP/1.1\r\nHost: 127.0.0.1:9180\r\n\r\n")
        head = sock.recv(4096)
        assert head.split(b" ", 2)[1] == b"403", head
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.recv(4096)
        except OSError:
            pass
    assert origin.count() == 0
    assert proxy.steer.connected == []
    # mitmproxy may read the GET sent after the refused CONNECT as a request of its own (then
    # also refused and recorded) or close first: which one is a race, the refusals are not
    decisions = [(r["stage"], r["action"]) for r in _decisions(proxy)]
    assert decisions[0] == ("connection", "block"), decisions
    assert {action for _, action in decisions} == {"block"}, decisions


def test_a_gateway_service_the_policy_lists_is_reachable(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy('gateway_services: ["127.0.0.1:9180"]\n' + TEST_RULES)
    res = curl(proxy, "http://127.0.0.1:9180/metrics")
    assert res.status == 200
    assert origin.saw(b"GET /metrics HTTP/1.1")
    assert curl(proxy, "http://127.0.0.1:9181/other").status == 403  # only the one listed


def test_the_proxys_own_port_stays_refused_when_the_policy_opens_loopback(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy('gateway_services: ["127.0.0.0/8", "::1"]\n' + TEST_RULES)
    assert curl(proxy, f"http://127.1:{proxy.port}/loop").status == 403
    assert not origin.saw(b"/loop")
    assert curl(proxy, "http://127.0.0.1:9180/ok").status == 200


# ------------------------------------------------------------------------- the real loop


def test_socialguard_run_does_not_connect_to_itself(tmp_path: Path) -> None:
    """Unsteered, as deployed: one request aimed at the proxy's own port is one refusal."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    err_path = tmp_path / "stderr.txt"
    cmd = [
        sys.executable, "-m", "socialguard", "run", "--rules", str(rules),
        "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
        "--state", str(tmp_path / "state"), "--node", "loop",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    with err_path.open("w") as err:
        proc = subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        port = _wait_for_port(proc, err_path)
        for spelling in ("[::ffff:127.0.0.1]", "2130706433", "LOCALHOST"):
            res = subprocess.run(
                ["curl", "-sS", "--max-time", "10", "--noproxy", "", "-x",
                 f"http://127.0.0.1:{port}", "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://{spelling}:{port}/"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert res.stdout == "403", (spelling, res.stdout, res.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    records = []
    for f in sorted((tmp_path / "state" / "log").glob("*.jsonl")):
        records.extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
    decisions = [r for r in records if r.get("type") == "decision"]
    assert len(decisions) == 3, f"{len(decisions)} decisions: the proxy met its own requests"
    assert {r["action"] for r in decisions} == {"block"}


def _wait_for_port(proc: subprocess.Popen[str], err_path: Path) -> int:
    text = ""
    for _ in range(600):  # bounded: up to a minute on a loaded machine
        text = err_path.read_text()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError("no listening line:\n" + text)
