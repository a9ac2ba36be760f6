"""Directory groups through the real proxy: the Wi-Fi's RADIUS says who holds an address, the
district's directory (a real slapd, tests/slapd_district.py) says which groups that person is in,
and `identity.groups` maps them onto the policy's groups. A teacher (directory group `teachers`,
mapped onto `staff`) is kept off Facebook in school hours; a student on the same network, whose
directory groups map onto nothing the rule names, is not. Asserted on what reached the origin and
on what the decision log says."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import harness  # type: ignore[import-not-found]
from slapd_district import (  # tests/slapd_district.py
    GROUPS,
    NEEDS_SLAPD,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    start_slapd,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("radclient") is None, reason="needs radclient"),
    NEEDS_SLAPD,
]

SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rules(tmp_path: Path, slapd: Slapd, port: int) -> str:
    (tmp_path / "radius.secret").write_text(SECRET + "\n")
    (tmp_path / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    identity = f"""\
identity:
  radius:
    listen: 127.0.0.1:{port}
    secret_file: {tmp_path / "radius.secret"}
  directory:
    url: {slapd.ldap_url}
    insecure_plaintext_on_loopback: true
    bind_dn: {SERVICE_DN}
    bind_password_file: {tmp_path / "bind.pw"}
    user_base: {PEOPLE}
    group_base: {GROUPS}
  groups:
    teachers: [staff]
  networks: [127.0.0.0/8]
  unidentified: unknown
"""
    return harness.TEST_RULES.split("tests:")[0] + identity


def radius_start(port: int, user: str, address: str) -> None:
    attrs = (
        f'User-Name = "{user}", Acct-Status-Type = Start, Framed-IP-Address = {address}, '
        f'Class = "wifi", Acct-Session-Id = "sess-{user}"'
    )
    done = subprocess.run(
        ["radclient", "-r", "1", "-t", "2", "-q", f"127.0.0.1:{port}", "acct", SECRET],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(200):  # bounded: the directory worker's answer, milliseconds on loopback
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("the directory's groups never reached the bindings")


def get(proxy: Any, source: str, path: str) -> int:
    """GET http://www.facebook.com/<path> through the proxy, from the loopback `source` address."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", proxy.port, timeout=15, source_address=(source, 0)
    )
    try:
        conn.request("GET", f"http://www.facebook.com/{path}", headers={"Host": "www.facebook.com"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def record_for(proxy: Any, client: str) -> dict[str, Any]:
    """The last request decision for Facebook from `client`."""
    found = [
        r
        for r in proxy.records()
        if r.get("host") == "www.facebook.com" and r.get("client") == client
    ]
    assert found, f"no decision record for {client}"
    return found[-1]


def test_a_teacher_by_directory_group_is_blocked_and_a_student_passes(
    start_proxy: Any, origin: Any, slapd: Slapd, tmp_path: Path
) -> None:
    port = free_udp_port()
    proxy = start_proxy(rules(tmp_path, slapd, port))
    identity = proxy.addon.identity
    radius_start(port, "alice", "127.0.0.1")  # teachers ⊂ staff in the directory
    radius_start(port, "sam", "127.0.0.2")  # students, loop-a, loop-b: none mapped
    wait_for(lambda: "teachers" in getattr(identity.person("127.0.0.1"), "groups", ()))
    wait_for(lambda: "students" in getattr(identity.person("127.0.0.2"), "groups", ()))

    assert get(proxy, "127.0.0.1", "alice-was-here") == 403
    assert not origin.saw(b"alice-was-here")
    alice = record_for(proxy, "127.0.0.1")
    assert (alice["user"], alice["identified_by"], alice["groups"], alice["action"]) == (
        "alice",
        "radius",
        ["staff"],
        "block",
    )

    assert get(proxy, "127.0.0.2", "sam-was-here") == 200
    assert origin.saw(b"GET /sam-was-here HTTP/1.1")
    sam = record_for(proxy, "127.0.0.2")
    assert (sam["user"], sam["identified_by"], sam["groups"], sam["action"]) == (
        "sam",
        "radius",
        [],
        "allow",
    )
    # looked up once each, off the request path; nothing failed
    assert identity.counters()["directory"] == {"results": {"found": 2}, "failures": {}}


def test_without_the_directory_the_teacher_is_not_staff(
    start_proxy: Any, origin: Any, slapd: Slapd, tmp_path: Path
) -> None:
    """The same person and rules less the directory: RADIUS's `wifi` maps onto nothing, so the
    block above is the directory's doing (this test fails if groups came from elsewhere)."""
    port = free_udp_port()
    text = rules(tmp_path, slapd, port)
    start, end = text.index("  directory:"), text.index("  groups:")
    proxy = start_proxy(text[:start] + text[end:])
    radius_start(port, "alice", "127.0.0.1")
    assert get(proxy, "127.0.0.1", "alice-again") == 200
    assert origin.saw(b"GET /alice-again HTTP/1.1")
    assert record_for(proxy, "127.0.0.1")["groups"] == []


def test_directory_answers_and_failures_are_in_metrics(
    start_proxy: Any, origin: Any, slapd: Slapd, tmp_path: Path
) -> None:
    port = free_udp_port()
    proxy = start_proxy(rules(tmp_path, slapd, port), socialguard_admin="127.0.0.1:0")
    identity = proxy.addon.identity
    radius_start(port, "carol", "127.0.0.1")
    radius_start(port, "pat", "127.0.0.3")  # two entries share the name: refused, counted
    wait_for(lambda: identity.counters()["directory"]["failures"].get("ambiguous") == 1)
    wait_for(lambda: identity.counters()["directory"]["results"].get("found") == 1)
    host, admin_port = proxy.addon._admin.address[:2]
    metrics = httpx.get(f"http://{host}:{admin_port}/metrics", timeout=10).text
    assert 'socialguard_directory_requests_total{result="found"} 1.0' in metrics
    assert 'socialguard_directory_requests_total{result="unknown"} 1.0' in metrics
    assert 'socialguard_directory_failures_total{reason="ambiguous"} 1.0' in metrics
    assert 'socialguard_directory_failures_total{reason="unreachable"} 0.0' in metrics
