"""Real names, unsteered: `socialguard run` in a private network namespace (tests/deploy/netns.py).

www.facebook.com and www.example.org resolve to 127.0.0.1 there (a private /etc/hosts), where the
recording origin listens on 80 and 443; the proxy connects to what the names resolve to, as it
would on a district network. No steering addon, no harness: the proxy exactly as deployed.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (  # type: ignore[import-not-found]
    TEST_RULES,
    RecordingOrigin,
    netns,
    tls_over_tunnel,
    tunnel,
)

pytestmark = pytest.mark.e2e

# Blocked at all times (the real clock decides here), so the answer does not depend on the hour.
ALWAYS_BLOCKED = TEST_RULES.split("tests:\n")[0].replace(
    "rules:\n",
    "rules:\n  - id: never-facebook\n    description: Not on this network\n    who: [staff]\n"
    "    what:\n      domains: [facebook.com]\n    action: block\n",
)
PROXY_PORT = 8080


class _Proxy:
    def __init__(self, port: int, ca: Path, log_dir: Path) -> None:
        self.port, self.ca, self.log_dir = port, ca, log_dir

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in sorted(self.log_dir.glob("*.jsonl")):
            out.extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
        return out


@pytest.fixture
def sandbox(tmp_path: Path, upstream_cert: tuple[Path, Path]) -> Iterator[tuple[Any, Any, Any]]:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with netns.PrivateNames(["www.facebook.com", "www.example.org"]) as names:
        with names.inside():
            origins = [RecordingOrigin(*upstream_cert, port=p) for p in (443, 80)]
        try:
            rules = tmp_path / "rules.yaml"
            rules.write_text(ALWAYS_BLOCKED)
            log = tmp_path / "proxy.log"
            proc = names.start(
                [sys.executable, "-m", "socialguard", "run", "--rules", rules,
                 "--listen", f"127.0.0.1:{PROXY_PORT}", "--certs", tmp_path / "certs",
                 "--state", tmp_path / "state", "--node", "names"],
                log=log,
            )  # fmt: skip
            for _ in range(600):  # bounded: up to a minute on a loaded machine
                if re.search(rf"listening on 127\.0\.0\.1:{PROXY_PORT}", log.read_text()):
                    break
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
            else:
                raise AssertionError("the proxy did not start:\n" + log.read_text())
            proxy = _Proxy(PROXY_PORT, tmp_path / "certs" / "mitmproxy-ca-cert.pem",
                           tmp_path / "state" / "log")  # fmt: skip
            yield names, proxy, origins[0]
        finally:
            for origin in origins:
                origin.close()


def test_a_raw_03_04_hello_to_facebook_by_its_real_name_meets_the_filter(
    sandbox: tuple[Any, Any, Any],
) -> None:
    names, proxy, origin = sandbox
    trust = ssl.create_default_context(cafile=str(proxy.ca))
    with names.inside(), tunnel(proxy, "www.facebook.com:443") as sock:
        tls = tls_over_tunnel(sock, "www.facebook.com", trust, record_version=b"\x03\x04")
        tls.write(b"GET /secret HTTP/1.1\r\nHost: www.facebook.com\r\nAccept: text/html\r\n\r\n")
        answer = tls.read_all()
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert not origin.saw(b"/secret")
    assert not [c for c in origin.connections if c.sni == "www.facebook.com"]
    blocked = [r for r in proxy.records() if r.get("stage") == "request"]
    assert [(r["action"], r["host"]) for r in blocked] == [("block", "www.facebook.com")]


def test_a_raw_03_04_hello_to_a_site_no_rule_concerns_reaches_it_by_its_real_name(
    sandbox: tuple[Any, Any, Any],
) -> None:
    names, proxy, origin = sandbox
    trust = ssl.create_default_context(cafile=str(origin.cert))
    with names.inside(), tunnel(proxy, "www.example.org:443") as sock:
        tls = tls_over_tunnel(sock, "www.example.org", trust, record_version=b"\x03\x04")
        tls.write(b"GET /fine HTTP/1.1\r\nHost: www.example.org\r\n\r\n")
        answer = tls.read_all()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    [conn] = [c for c in origin.connections if c.requests]
    assert conn.sni == "www.example.org"
