"""A person's browser at the OpenID Connect provider, run inside a client network namespace.

Usage: python netns_provider_login.py AUTHORIZE_URL CA_FILE USER PORTAL

Walks the provider's own login and consent pages (its forms, posted) from the address the
provider sent the browser to, and prints the address the provider sends it back to (the portal's
callback). It runs as its own process under `ip netns exec`, so names resolve through that
namespace's /etc/hosts and its connections take that namespace's route (through the gateway).
The same walk as `log_in_at_provider` in conftest.py, without the test's imports.
"""

from __future__ import annotations

import re
import ssl
import sys
from urllib.parse import urljoin

import httpx

_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
STEPS = 12  # login, consent and their redirects: a handful of steps


def walk(url: str, cafile: str, user: str, portal: str) -> str:
    ctx = ssl.create_default_context(cafile=cafile)
    with httpx.Client(verify=ctx, follow_redirects=False, timeout=15) as browser:
        for _ in range(STEPS):
            if url.startswith(f"https://{portal}/"):
                return url
            resp = browser.get(url)
            if resp.is_redirect:
                url = urljoin(url, resp.headers["location"])
                continue
            if resp.status_code != 200:
                raise SystemExit(f"{url}: {resp.status_code} {resp.text[:500]}")
            action, inner = _FORM.findall(resp.text)[0]
            fields = dict(_HIDDEN.findall(inner))
            if fields.get("prompt") == "login":
                fields.update(login=user, password="any-password")
            posted = browser.post(urljoin(url, action), data=fields)
            if not posted.is_redirect:
                raise SystemExit(f"{action}: {posted.status_code} {posted.text[:500]}")
            url = urljoin(url, posted.headers["location"])
    raise SystemExit("the provider never sent the browser back")


if __name__ == "__main__":
    print(walk(*sys.argv[1:5]))
