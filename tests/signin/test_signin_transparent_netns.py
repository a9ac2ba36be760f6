"""The sign-in page end to end in transparent mode, in network namespaces this test creates.

    client ns                  gateway ns                                   upstream ns
    10.99.1.2 ──veth── 10.99.1.1 (nft redirect,           10.99.2.1 ──veth── www.facebook.com
    own /etc/hosts)      socialguard run --mode transparent,                 (a recording origin)
                         slapd on its loopback)

The client knows nothing of the proxy: its only configuration is an address, a default route via
the gateway, the proxy's CA and a hosts file naming the social site and the portal. Its traffic
is redirected to the proxy by the ruleset `socialguard deploy nftables` prints (the topology of
tests/deploy/netns.py). No identity source names the client, so the policy sends it to sign in;
it signs in with its directory password (a real slapd), and its next request is the person's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from conftest import PORTAL, RecordingOrigin, harness  # type: ignore[import-not-found]
from slapd_district import (  # tests/slapd_district.py
    GROUPS,
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SLAPD,
    Slapd,
    start_slapd,
)
from socialguard.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _load_netns() -> ModuleType:
    """tests/deploy/netns.py (the namespace lab), loaded under its own name."""
    name = "socialguard_deploy_netns"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "deploy" / "netns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


netns = _load_netns()

pytestmark = [pytest.mark.netns, pytest.mark.e2e]
REASON = netns.unavailable_reason() or (
    None if SLAPD else "needs slapd (apt-get install slapd ldap-utils)"
)
if REASON:
    pytestmark.append(pytest.mark.skip(reason=REASON))

PROXY_PORT = 8080
ADMIN = "127.0.0.1:9180"
SOCIAL_HOST = "www.facebook.com"
PORTAL_V4 = "10.99.2.80"  # nobody owns it: only the gateway's redirect ever answers it
OTHER_CLIENT = "10.99.1.100"  # another device on the same network, never signed in
THIRD_CLIENT = "10.99.1.101"  # a device whose district DNS names the gateway as the portal
NAVIGATE = ("-H", "Accept: text/html", "-H", "Sec-Fetch-Mode: navigate")


def policy(slapd: Slapd, bind_password: Path) -> str:
    """The BYOD network must sign in; teachers may use social networking, the rest may not."""
    return f"""\
district:
  name: Namespace Sign-in District
  timezone: UTC
groups:
  byod:
    networks: [{netns.LAN_V4}]
  teachers:
    users: [nobody-by-name]
categories:
  social:
    domains: [facebook.com, instagram.com]
rules:
  - id: teachers-social
    description: Teachers run their classes' pages
    who: [teachers]
    what:
      categories: [social]
    action: allow
  - id: byod-social
    description: No social networking on the BYOD network
    who: [byod]
    what:
      categories: [social]
    action: block
default: allow
identity:
  directory:
    url: {slapd.ldaps_url}
    ca_file: {slapd.ca_file}
    bind_dn: {SERVICE_DN}
    bind_password_file: {bind_password}
    user_base: {PEOPLE}
    group_base: {GROUPS}
  groups:
    teachers: [teachers]
  networks: [{netns.LAN_V4}]
  unidentified: sign-in
  sign_in:
    portal: {PORTAL}
    ldap: true
"""


@contextlib.contextmanager
def inside(ns: Any) -> Iterator[None]:
    """Sockets and processes this thread makes in the block belong to namespace `ns`."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns.name}") as target:
        os.setns(target.fileno(), os.CLONE_NEWNET)
        try:
            yield
        finally:
            os.setns(home.fileno(), os.CLONE_NEWNET)


def socialguard(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


@dataclass
class Gateway:
    lab: Any
    origin: Any
    proxy_ca: Path
    log_dir: Path
    workdir: Path

    def curl(
        self, url: str, *args: str, source: str | None = None, resolve: str | None = None
    ) -> Any:
        """curl in the client namespace (its own /etc/hosts resolves every name, unless
        `resolve` gives the address)."""
        extra = ["--interface", source] if source else []
        return self.lab.curl(url, "--cacert", str(self.proxy_ca), "-D", "/dev/stderr", *extra,
                             *args, resolve=resolve)  # fmt: skip

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.log_dir.rglob("*")):
            if path.is_file() and not path.name.endswith(".gz"):
                lines = path.read_text(errors="replace").splitlines()
                out += [json.loads(x) for x in lines if x.startswith("{")]
        return out

    def proxy_log(self) -> str:
        return (self.workdir / "proxy.log").read_text(errors="replace")[-3000:]


def location(stderr: str) -> str:
    """The Location header from curl's dumped response headers."""
    found = re.findall(r"(?im)^location:\s*(\S+)\s*$", stderr)
    assert found, stderr
    return str(found[-1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("signin-netns")
    with netns.Lab(workdir) as lab:
        etc = Path("/etc/netns") / lab.client.name
        try:
            yield _build(lab, workdir, etc)
        finally:
            shutil.rmtree(etc, ignore_errors=True)


def _build(lab: Any, workdir: Path, etc: Path) -> Gateway:
    for address in (OTHER_CLIENT, THIRD_CLIENT):
        lab.client.run("ip", "addr", "add", f"{address}/24", "dev", "c0")
    # The client's own names: `ip netns exec` binds /etc/netns/<ns>/hosts over /etc/hosts.
    etc.mkdir(parents=True)
    (etc / "hosts").write_text(
        f"127.0.0.1 localhost\n{netns.SOCIAL_V4} {SOCIAL_HOST}\n{PORTAL_V4} {PORTAL}\n"
    )
    # The social site: a recording origin in the upstream namespace, on its real address.
    cert, key = harness.make_self_signed(workdir, (SOCIAL_HOST,))
    with inside(lab.upstream):
        origin = RecordingOrigin(cert, key, port=80, host=netns.SOCIAL_V4)
    lab.processes.append(_Closer(origin))
    # The directory on the gateway's own loopback, where the proxy reaches it.
    with inside(lab.router):
        slapd = start_slapd(workdir / "slapd")
    lab.processes.append(_Closer(slapd))
    bind_password = workdir / "bind.pw"
    bind_password.write_text(SERVICE_PASSWORD + "\n")
    rules = workdir / "policy.yaml"
    rules.write_text(policy(slapd, bind_password))
    ruleset = workdir / "socialguard.nft"
    ruleset.write_text(
        socialguard("deploy", "nftables", "--lan", "r0", "--subnet", netns.LAN_V4,
                    "--proxy-port", str(PROXY_PORT), "--mode", "full", "--workers", "1",
                    "--portal", netns.ROUTER_LAN_V4)
    )  # fmt: skip
    lab.router.run("nft", "-f", ruleset)
    certs, log_dir = workdir / "certs", workdir / "log"
    socialguard("ca", "init", "--certs", certs)
    lab.start(
        lab.router,
        [sys.executable, "-m", "socialguard", "run", "--mode", "transparent",
         "--listen", f"*:{PROXY_PORT}", "--rules", rules, "--certs", certs,
         "--state", workdir / "state", "--log-dir", log_dir, "--admin", ADMIN],
        log=workdir / "proxy.log",
    )  # fmt: skip
    try:
        lab.wait_for_http(lab.router, f"http://{ADMIN}/healthz", timeout=45)
        lab.wait_for_listener(lab.router, PROXY_PORT, timeout=15)
    except AssertionError as e:
        log = (workdir / "proxy.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{e}\nproxy log:\n{log}") from e
    return Gateway(lab, origin, certs / "mitmproxy-ca-cert.pem", log_dir, workdir)


class _Closer:
    """Lets the lab stop an in-process origin or the slapd with its own processes, in order."""

    def __init__(self, thing: Any) -> None:
        self.thing = thing
        self.stdout = None
        self.args = repr(thing)

    def poll(self) -> int | None:
        process = getattr(self.thing, "process", None)
        return process.poll() if process is not None else None

    def terminate(self) -> None:
        (self.thing.stop if hasattr(self.thing, "stop") else self.thing.close)()

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def kill(self) -> None:
        self.terminate()


def password_form(gw: Gateway, portal_url: str) -> dict[str, str]:
    page = gw.curl(portal_url, *NAVIGATE)
    assert page.status == 200, f"{page.stderr}\n{gw.proxy_log()}"
    assert 'type="password"' in page.body
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.body))
    return {k: v.replace("&amp;", "&") for k, v in fields.items()}


def test_a_device_signs_in_through_the_transparent_gateway_and_is_then_the_person(
    gateway: Gateway,
) -> None:
    gw = gateway
    # Before sign-in: the social site, over HTTPS and plain HTTP, is a trip to the portal.
    first = gw.curl(f"https://{SOCIAL_HOST}/before-sign-in?x=1", *NAVIGATE)
    assert first.status == 302, f"{first.stderr}\n{gw.proxy_log()}"
    portal_url = location(first.stderr)
    target = urlsplit(portal_url)
    assert (target.scheme, target.hostname, target.path) == ("https", PORTAL, "/")
    assert parse_qs(target.query)["next"] == [f"https://{SOCIAL_HOST}/before-sign-in?x=1"]
    plain = gw.curl(f"http://{SOCIAL_HOST}/before-sign-in-plain", *NAVIGATE)
    assert plain.status == 302, plain.stderr
    assert urlsplit(location(plain.stderr)).hostname == PORTAL

    # The portal, reached at an address the gateway intercepts; the password form, posted.
    form = password_form(gw, portal_url)
    posted = gw.curl(
        f"https://{PORTAL}/password", "-H", f"Origin: https://{PORTAL}",
        *[a for k, v in {**form, "username": "alice", "password": PASSWORDS["alice"]}.items()
          for a in ("--data-urlencode", f"{k}={v}")],
    )  # fmt: skip
    assert posted.status == 303, f"{posted.stderr}\n{posted.body}\n{gw.proxy_log()}"
    assert location(posted.stderr) == f"https://{SOCIAL_HOST}/before-sign-in?x=1"
    assert not gw.origin.saw(b"before-sign-in"), "nothing reached the site before sign-in"

    # Signed in: the device's next request is alice's, a teacher, and reaches the site.
    after = gw.curl(f"http://{SOCIAL_HOST}/after-sign-in", *NAVIGATE)
    assert after.status == 200, f"{after.stderr}\n{gw.proxy_log()}"
    assert after.body == f"origin saw GET /after-sign-in HTTP/1.1 host={SOCIAL_HOST}\n"
    assert gw.origin.saw(b"GET /after-sign-in HTTP/1.1")
    received = gw.origin.received()
    assert b"before-sign-in" not in received
    assert PORTAL.encode() not in received, "the portal is never forwarded to an origin"
    assert PASSWORDS["alice"].encode() not in received

    requests = [r for r in gw.records() if r.get("host") == SOCIAL_HOST
                and r.get("stage") == "request"]  # fmt: skip
    last = requests[-1]
    assert (last["user"], last["identified_by"], last["groups"]) == (
        "alice", "sign-in", ["teachers"],
    ), last  # fmt: skip
    assert (last["action"], last.get("rule")) == ("allow", "teachers-social"), last
    signed_in = [r for r in gw.records() if r.get("type") == "sign_in"
                 and r.get("outcome") == "signed_in"]  # fmt: skip
    assert [(r["user"], r["method"]) for r in signed_in] == [("alice", "ldap")]
    assert PASSWORDS["alice"] not in json.dumps(gw.records())

    # The binding is the device's address: another device on the network must still sign in.
    other = gw.curl(f"http://{SOCIAL_HOST}/other-device", *NAVIGATE, source=OTHER_CLIENT)
    assert other.status == 302, other.stderr
    assert not gw.origin.saw(b"/other-device")


def test_the_portal_answers_at_the_gateways_own_address(gateway: Gateway) -> None:
    """The README says: point the portal's name at the gateway. Connections to the gateway's own
    address are not the district's web traffic, yet the portal's must reach the proxy."""
    gw = gateway
    first = gw.curl(f"https://{SOCIAL_HOST}/portal-at-gateway", *NAVIGATE, source=THIRD_CLIENT)
    assert first.status == 302, first.stderr
    page = gw.curl(location(first.stderr), *NAVIGATE, source=THIRD_CLIENT,
                   resolve=netns.ROUTER_LAN_V4)  # fmt: skip
    assert page.status == 200, f"{page.stderr}\n{gw.proxy_log()}"
    assert 'type="password"' in page.body
    plain = gw.curl(f"http://{PORTAL}/", *NAVIGATE, source=THIRD_CLIENT,
                    resolve=netns.ROUTER_LAN_V4)  # fmt: skip
    assert plain.status == 308, plain.stderr
    assert location(plain.stderr) == f"https://{PORTAL}/"
    # Only the web ports: the gateway's other services are still its own.
    ssh = gw.lab.client.run("curl", "-sS", "--max-time", "3", f"http://{netns.ROUTER_LAN_V4}:22/",
                            check=False)  # fmt: skip
    assert ssh.returncode == 7, ssh.stderr  # refused: nothing listens there, nothing redirected
    assert not gw.origin.saw(b"portal-at-gateway")
