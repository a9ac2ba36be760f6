"""The sign-in page's own pages, rendered by the real portal code, checked by axe-core in a real
headless Chromium (no serious or critical accessibility violation) and screenshotted for a phone."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_signin_oidc import client  # type: ignore[import-not-found]

from conftest import NODE_MODULES, PORTAL, Provider  # type: ignore[import-not-found]
from socialguard.engine.identity import Binding
from socialguard.engine.model import Principal
from socialguard.proxy.pagekit import Brand
from socialguard.proxy.signin import PortalRequest, SignInPortal

AXE = NODE_MODULES / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ME = "10.40.1.2"


class _Directory:
    """Stands for the directory when only the form's rendering is under test (no sign-in)."""


def portal(provider: Provider, tmp_path: Path, bound: Binding | None = None) -> SignInPortal:
    return SignInPortal(
        PORTAL,
        8 * 3600,
        client(provider, tmp_path),
        lambda b: None,
        lambda a: None,
        lambda a: bound,
        lambda: Brand("Test District", "IT help desk, (406) 555-0100, help@district.example"),
        lambda: 1_800_000_000.0,
        _Directory,  # type: ignore[arg-type]
    )


def get(p: SignInPortal, path: str, method: str = "GET") -> str:
    req = PortalRequest(method, "https", path, ME, Principal(ME))
    return p.handle(req).body.decode()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
         *args],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


AXE_RUNNER = """
<script>{axe}</script>
<script>
axe.run(document, {{ resultTypes: ["violations"] }}).then(function (r) {{
  var out = document.createElement("pre");
  out.id = "axe-result";
  out.textContent = JSON.stringify(r.violations.map(function (v) {{
    return {{ id: v.id, impact: v.impact, help: v.help }};
  }}));
  document.body.appendChild(out);
}});
</script>
"""


def serious_violations(html: str, probe: Path) -> list[Any]:
    """axe-core over a test-only copy of the page with axe inlined (the real page's CSP allows
    no script, and it needs none)."""
    runner = AXE_RUNNER.format(axe=AXE.read_text(encoding="utf-8"))
    probe.write_text(html.replace("</body>", runner + "</body>"), encoding="utf-8")
    done = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="axe-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"axe did not finish: {done.stderr[-2000:]}"
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return [v for v in json.loads(text) if v["impact"] in ("serious", "critical")]


def test_the_sign_in_pages_are_accessible_and_screenshotted(
    provider: Provider, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm install --prefix var/node axe-core)")
    jdoe = Binding(ME, "sign-in", user="jdoe@district.example", until=1_800_003_600.0)
    pages = {
        "sign-in": get(portal(provider, tmp_path), "/?next=https://www.facebook.com/"),
        "signed-in": get(portal(provider, tmp_path, jdoe), "/?next=https://www.facebook.com/"),
        "sign-in-failed": get(portal(provider, tmp_path), "/oidc/callback?state=x&code=y"),
    }
    assert (
        'type="password"' in pages["sign-in"] and "Sign in with your district" in pages["sign-in"]
    )
    assert "Sign out" in pages["signed-in"]
    ARTIFACTS.mkdir(exist_ok=True)
    bad = {}
    for name, html in pages.items():
        found = serious_violations(html, tmp_path / f"axe-{name}.html")
        if found:
            bad[name] = found
        page = tmp_path / f"{name}.html"
        page.write_text(html, encoding="utf-8")
        shot = tmp_path / f"signin-{name}-phone.png"
        chromium("--window-size=390,844", f"--screenshot={shot}", page.as_uri())
        assert shot.exists() and shot.stat().st_size > 1000
        shutil.copy(shot, ARTIFACTS / shot.name)
    assert not bad, json.dumps(bad, indent=1)
