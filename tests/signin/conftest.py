"""The sign-in page's real parts: the proxy harness, a recording origin, and a real OpenID Connect
provider (panva's `oidc-provider`, run with node over TLS on loopback; never a hand-made fake).

The provider comes from npm (`npm install --no-save --prefix var/node axe-core oidc-provider`, as
`.ci/run` does); without node or the package these tests are skipped, saying what to install.
Its development login form accepts any password: it stands in for the district's login page, while
discovery, JWKS, PKCE, the token endpoint and ID token signing are the provider's own code.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from proxy_harness import load_proxy_harness  # tests/proxy_harness.py

harness = load_proxy_harness()
ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "var" / "node" / "node_modules"
PROVIDER_MODULE = NODE_MODULES / "oidc-provider" / "lib" / "index.js"
PROVIDER_SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"
PORTAL = "sign-in.district.example"
CLIENT_ID = "socialguard-proxy"
CLIENT_SECRET = "a-client-secret-for-tests-only-0123456789"
ACCOUNTS = {
    "jdoe": {"email": "jdoe@district.example", "groups": ["District-Staff"]},
    "pr": {"email": "pr@district.example", "groups": ["Communications"]},
}


def _load_adversarial() -> Any:
    """tests/adversarial/conftest.py (the RecordingOrigin), loaded under its own name."""
    name = "socialguard_adversarial_parts"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "tests" / "adversarial" / "conftest.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


adversarial = _load_adversarial()
RecordingOrigin = adversarial.RecordingOrigin
ca_dir = harness.ca_dir
start_proxy = harness.start_proxy


@pytest.fixture(scope="session")
def upstream_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return harness.make_self_signed(tmp_path_factory.mktemp("origin"), adversarial.ORIGIN_NAMES)


@pytest.fixture
def origin(upstream_cert: tuple[Path, Path]) -> Iterator[Any]:
    rec = RecordingOrigin(*upstream_cert)
    yield rec
    rec.close()


@pytest.fixture
def upstreams(origin: Any) -> Any:
    """Every upstream connection the proxy opens reaches the recording origin."""
    return harness.Upstreams(origin.port, origin.port, origin.cert, [])


# ------------------------------------------------------------------------- the provider


@dataclass
class Provider:
    issuer: str
    cert: Path
    process: subprocess.Popen[str]

    def client(self) -> httpx.Client:
        """The person's browser, talking to the provider (directly: it is not a site any rule
        concerns, and the proxy's own part of the flow is what is under test)."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return httpx.Client(verify=ctx, follow_redirects=False, timeout=15)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install nodejs npm)")
    if not PROVIDER_MODULE.is_file():
        pytest.skip("oidc-provider is not installed (npm install --prefix var/node oidc-provider)")
    work = tmp_path_factory.mktemp("oidc")
    cert, key = harness.make_self_signed(work, ("localhost",))
    port = _free_port()
    issuer = f"https://127.0.0.1:{port}"
    config = work / "provider.json"
    config.write_text(
        json.dumps(
            {
                "module": str(PROVIDER_MODULE),
                "port": port,
                "cert": str(cert),
                "key": str(key),
                "issuer": issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uri": f"https://{PORTAL}/oidc/callback",
                "accounts": ACCOUNTS,
            }
        )
    )
    proc = subprocess.Popen(
        ["node", str(PROVIDER_SCRIPT), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready", or EOF if it died
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"oidc-provider did not start: {proc.communicate()[1][-2000:]}")
        yield Provider(issuer, cert, proc)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def log_in_at_provider(provider: Provider, authorize_url: str, user: str) -> str:
    """Walk the provider's own login and consent pages as a person would (its forms, posted);
    the address the provider sends the browser back to (the portal's callback)."""
    with provider.client() as browser:
        url = authorize_url
        for _ in range(12):  # login, consent and their redirects: a handful of steps
            if url.startswith(f"https://{PORTAL}/"):
                return url
            resp = browser.get(url)
            if resp.is_redirect:
                url = urljoin(url, resp.headers["location"])
                continue
            assert resp.status_code == 200, resp.text[:500]
            action, inner = _FORM.findall(resp.text)[0]
            fields = dict(_HIDDEN.findall(inner))
            if fields.get("prompt") == "login":
                fields.update(login=user, password="any-password")
            posted = browser.post(urljoin(url, action), data=fields)
            assert posted.is_redirect, posted.text[:500]
            url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider never sent the browser back")


def sign_in_rules(provider: Provider, tmp: Path, *, extra_rules: str = "", default: str = "allow",
                  session: str = "8h") -> str:  # fmt: skip
    """Rules for the sign-in tests: 127.0.0.0/8 is a sign-in network."""
    secret = tmp / "oidc.secret"
    secret.write_text(CLIENT_SECRET + "\n")
    return f"""\
district:
  name: Test District
  timezone: America/Denver
  contact: IT help desk, (406) 555-0100
schedules:
  school-hours:
    weekly:
      mon-fri: ["07:30-16:00"]
groups:
  staff:
    networks: [127.0.0.0/8]
  comms:
    users: [nobody-by-name]
categories:
  social:
    domains: [facebook.com, instagram.com]
rules:
{extra_rules}  - id: comms-may-post
    description: Communications staff run the district's pages
    who: [comms]
    what:
      categories: [social]
    action: allow
  - id: staff-social-school-hours
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
default: {default}
gateway_services: ["127.0.0.1"]
identity:
  groups:
    District-Staff: [staff]
    Communications: [comms]
  networks: [127.0.0.0/8]
  unidentified: sign-in
  sign_in:
    portal: {PORTAL}
    session: {session}
    oidc:
      issuer: {provider.issuer}
      client_id: {CLIENT_ID}
      client_secret_file: {secret}
      ca_file: {provider.cert}
      scopes: [openid, email, profile, groups]
"""
