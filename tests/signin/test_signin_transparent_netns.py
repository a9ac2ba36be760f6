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

from conftest import (  # type: ignore[import-not-found]
    ACCOUNTS,
    CLIENT_ID,
    CLIENT_SECRET,
    PORTAL,
    PROVIDER_MODULE,
    PROVIDER_SCRIPT,
    RecordingOrigin,
    harness,
)
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
OIDC_REASON = (
    "node is not installed (apt-get install nodejs npm)" if shutil.which("node") is None
    else None if PROVIDER_MODULE.is_file()
    else "oidc-provider is not installed (npm install --prefix var/node oidc-provider)"
)  # fmt: skip

PROXY_PORT = 8080
ADMIN = "127.0.0.1:9180"
SOCIAL_HOST = "www.facebook.com"
PORTAL_V4 = "10.99.2.80"  # nobody owns it: only the gateway's redirect ever answers it
OTHER_CLIENT = "10.99.1.100"  # another device on the same network, never signed in
THIRD_CLIENT = "10.99.1.101"  # a device whose district DNS names the gateway as the portal
OIDC_CLIENT = "10.99.1.102"  # a device whose person signs in with the district's provider
LOGIN_HOST, LOGIN_V4 = "login.district.example", "10.99.2.60"  # the provider, upstream
LOGIN_SCRIPT = Path(__file__).resolve().parent / "netns_provider_login.py"
NAVIGATE = ("-H", "Accept: text/html", "-H", "Sec-Fetch-Mode: navigate")


def policy(slapd: Slapd, bind_password: Path, oidc: str) -> str:
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
    District-Staff: [teachers]
  networks: [{netns.LAN_V4}]
  unidentified: sign-in
  sign_in:
    portal: {PORTAL}
    ldap: true
{oidc}"""


def oidc_block(provider_cert: Path, secret: Path) -> str:
    return f"""\
    oidc:
      issuer: https://{LOGIN_HOST}
      client_id: {CLIENT_ID}
      client_secret_file: {secret}
      ca_file: {provider_cert}
      scopes: [openid, email, profile, groups]
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
    browser_ca: Path  # the proxy's CA and the provider's certificate: what the device trusts
    provider_cert: Path | None
    log_dir: Path
    workdir: Path

    def curl(
        self, url: str, *args: str, source: str | None = None, resolve: str | None = None
    ) -> Any:
        """curl in the client namespace (its own /etc/hosts resolves every name, unless
        `resolve` gives the address)."""
        extra = ["--interface", source] if source else []
        return self.lab.curl(url, "--cacert", str(self.browser_ca), "-D", "/dev/stderr", *extra,
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
        etcs = [Path("/etc/netns") / ns.name for ns in (lab.client, lab.router)]
        try:
            yield _build(lab, workdir, *etcs)
        finally:
            for etc in etcs:
                shutil.rmtree(etc, ignore_errors=True)


def _build(lab: Any, workdir: Path, client_etc: Path, router_etc: Path) -> Gateway:
    for address in (OTHER_CLIENT, THIRD_CLIENT, OIDC_CLIENT):
        lab.client.run("ip", "addr", "add", f"{address}/24", "dev", "c0")
    # Each side's own names: `ip netns exec` binds /etc/netns/<ns>/hosts over /etc/hosts.
    client_etc.mkdir(parents=True)
    (client_etc / "hosts").write_text(
        f"127.0.0.1 localhost\n{netns.SOCIAL_V4} {SOCIAL_HOST}\n{PORTAL_V4} {PORTAL}\n"
        f"{LOGIN_V4} {LOGIN_HOST}\n"
    )
    router_etc.mkdir(parents=True)
    (router_etc / "hosts").write_text(f"127.0.0.1 localhost\n{LOGIN_V4} {LOGIN_HOST}\n")
    oidc, provider_cert = "", None
    if OIDC_REASON is None:
        provider_cert = start_provider(lab, workdir)
        secret = workdir / "oidc.secret"
        secret.write_text(CLIENT_SECRET + "\n")
        oidc = oidc_block(provider_cert, secret)
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
    rules.write_text(policy(slapd, bind_password, oidc))
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
    proxy_ca = certs / "mitmproxy-ca-cert.pem"
    bundle = workdir / "browser-ca.pem"
    trusted = [proxy_ca, *([provider_cert] if provider_cert else [])]
    bundle.write_bytes(b"".join(p.read_bytes() for p in trusted))
    return Gateway(lab, origin, proxy_ca, bundle, provider_cert, log_dir, workdir)


def start_provider(lab: Any, workdir: Path) -> Path:
    """The real provider (oidc-provider) upstream on its own name and port 443; its certificate."""
    lab.upstream.run("ip", "addr", "add", f"{LOGIN_V4}/24", "dev", "u0")
    (workdir / "provider").mkdir()
    cert, key = harness.make_self_signed(workdir / "provider", (LOGIN_HOST,))
    config = workdir / "provider.json"
    config.write_text(
        json.dumps(
            {
                "module": str(PROVIDER_MODULE), "host": LOGIN_V4, "port": 443,
                "cert": str(cert), "key": str(key), "issuer": f"https://{LOGIN_HOST}",
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_uri": f"https://{PORTAL}/oidc/callback", "accounts": ACCOUNTS,
            }
        )
    )  # fmt: skip
    lab.start(lab.upstream, ["node", PROVIDER_SCRIPT, config], ready="ready",
              log=workdir / "provider.log")  # fmt: skip
    return cert


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


@pytest.mark.skipif(OIDC_REASON is not None, reason=OIDC_REASON or "")
def test_a_device_signs_in_with_the_districts_provider_through_the_transparent_gateway(
    gateway: Gateway,
) -> None:
    """The provider is a site no rule concerns: the device reaches it through the gateway with
    the provider's own certificate (passed through, never inspected), the proxy reaches it from
    the gateway, and the callback at the portal binds the device to the person of the ID token."""
    gw = gateway
    first = gw.curl(f"https://{SOCIAL_HOST}/oidc-before", *NAVIGATE, source=OIDC_CLIENT)
    assert first.status == 302, first.stderr
    front = gw.curl(location(first.stderr), *NAVIGATE, source=OIDC_CLIENT)
    assert front.status == 200, front.stderr
    found = re.search(r'href="(/oidc/start[^"]*)"', front.body)
    assert found, front.body
    start = gw.curl(f"https://{PORTAL}{found.group(1).replace('&amp;', '&')}", *NAVIGATE,
                    source=OIDC_CLIENT)  # fmt: skip
    assert start.status == 303, f"{start.stderr}\n{gw.proxy_log()}"
    authorize = location(start.stderr)
    assert urlsplit(authorize).hostname == LOGIN_HOST
    # Trusting only the provider's own certificate: the proxy never inspected the provider.
    walked = gw.lab.client.run(
        sys.executable, LOGIN_SCRIPT, authorize, str(gw.provider_cert), "jdoe", PORTAL, timeout=60
    )
    callback = walked.stdout.strip()
    done = gw.curl(callback, *NAVIGATE, source=OIDC_CLIENT)
    assert done.status == 303, f"{done.stderr}\n{done.body}\n{gw.proxy_log()}"
    assert location(done.stderr) == f"https://{SOCIAL_HOST}/oidc-before"

    after = gw.curl(f"http://{SOCIAL_HOST}/oidc-after", *NAVIGATE, source=OIDC_CLIENT)
    assert after.status == 200, f"{after.stderr}\n{gw.proxy_log()}"
    assert gw.origin.saw(b"GET /oidc-after HTTP/1.1")
    assert not gw.origin.saw(b"/oidc-before")
    record = [r for r in gw.records() if r.get("host") == SOCIAL_HOST
              and r.get("stage") == "request"][-1]  # fmt: skip
    assert (record["user"], record["identified_by"], record["groups"]) == (
        "jdoe@district.example", "sign-in", ["teachers"],
    ), record  # fmt: skip
    # The provider's connections were passed through: no request record names it.
    assert not [r for r in gw.records() if r.get("host") == LOGIN_HOST
                and r.get("stage") == "request"]  # fmt: skip
