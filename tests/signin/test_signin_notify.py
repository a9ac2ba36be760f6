"""A person who signed in with the district's OpenID Connect provider (the real one, by their
`email` claim) is told the answer to their access request at that address: filed from the block
page through the real proxy, denied by an administrator with the CLI, received by a real SMTP
server (tests/notify/conftest.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_signin_flow import browser, sign_in  # type: ignore[import-not-found]

from conftest import ROOT, Provider, harness, sign_in_rules  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e


def _load_notify_parts() -> Any:
    """tests/notify/conftest.py (the SMTP server), loaded under its own name."""
    name = "socialguard_notify_parts"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "notify" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


notify = _load_notify_parts()

REQUESTS_RULE = """\
  - id: staff-social-ask
    description: Staff may ask for access to social networking for school work
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant]
"""


@pytest.fixture
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cert = harness.make_self_signed(tmp_path_factory.mktemp("smtp"), ("localhost",))
    server = notify.SmtpServer(*cert)
    server.start()
    yield server
    server.stop()


def rules(provider: Provider, smtp: Any, tmp_path: Path) -> str:
    (tmp_path / "smtp-password").write_text(notify.SMTP_PASSWORD + "\n")
    return sign_in_rules(provider, tmp_path, extra_rules=REQUESTS_RULE) + (
        f"notifications:\n  email:\n    host: 127.0.0.1\n    port: {smtp.port}\n"
        f"    username: {notify.SMTP_USER}\n    password_file: {tmp_path / 'smtp-password'}\n"
        f"    ca_file: {smtp.cert}\n    from: sg@school.test\n"
    )


def cli(proxy: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOCIALGUARD_STATE": str(proxy.rules.parent / "state")}
    return subprocess.run(
        [sys.executable, "-m", "socialguard", *args, "--rules", str(proxy.rules)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_the_signed_in_person_is_told_the_answer_at_the_address_the_provider_vouched_for(
    start_proxy: Any, provider: Provider, origin: Any, smtp: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(rules(provider, smtp, tmp_path))
    assert sign_in(proxy, provider, "jdoe").status_code == 303
    with browser(proxy) as b:
        page = b.get("https://www.facebook.com/groups/class-7b")
        assert page.status_code == 403
        token = re.search(
            r'action="/\.socialguard/request".*?name="token" value="([^"]+)"', page.text, re.S
        )
        assert token, "the block page offers the request form"
        sent = b.post(
            "https://www.facebook.com/.socialguard/request",
            data={"token": token.group(1), "reason": "Class page; mail me at x@attacker.example"},
        )
    assert sent.status_code == 200, sent.text
    found = re.search(r"\((r-[a-z0-9]+)\)", sent.text)
    assert found, sent.text
    answer = cli(proxy, "grant", "deny", found.group(1), "--reason", "Use the district page")
    assert answer.returncode == 0, answer.stderr

    told = smtp.wait_for("jdoe@district.example")[0]
    assert "denied" in told.subject.lower() and "Use the district page" in told.body
    assert [m.rcpt for m in smtp.mails] == [["jdoe@district.example"]]  # nothing typed is used
