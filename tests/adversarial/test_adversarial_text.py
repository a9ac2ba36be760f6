"""Text from the network never reaches an administrator's terminal or spreadsheet raw.

A staff member (or a compromised device) controls the Host header and the reason typed into the
block page's forms. Those end up in the decision log and in the overrides store, and from there in
`audit tail`, `audit search` (table and CSV), `audit report` (text and HTML), `emergency review` and
`grant requests`. An escape sequence there would retitle or clear the auditor's terminal (or worse,
on terminals that answer queries); a bidi override would reverse what they read; a cell starting
with `=` would be a formula in the district's spreadsheet. Each case makes the records through the
real proxy from a real request, then runs the real command and asserts on the bytes it printed.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from socialguard_proxy_harness import curl  # type: ignore[import-not-found]  # conftest loads it

pytestmark = pytest.mark.e2e

RULES = """\
district:
  name: Test District
  timezone: America/Denver
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    description: Social networking sites
    domains: [facebook.com, instagram.com, tiktok.com]
rules:
  - id: staff-social
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    action: block
    bypass: [grant, emergency]
default: allow
"""
HTML = ("-H", "Accept: text/html")
CLOSE = "Connection: close\r\n\r\n"
WAIT_S = 20.0  # bounded wait for the proxy to copy the store's outbox into the decision log

# What an attacker puts in: an OSC that retitles the terminal, a clear-screen CSI, a bidi override.
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
RLO = "\u202e"
# Bytes no human-facing output may carry: C0 controls but newline, DEL, C1 (as UTF-8), bidi.
RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def sg(*args: str, env: dict[str, str] | None = None) -> bytes:
    """The real `socialguard` command; its stdout as bytes (exit 0 required)."""
    res = subprocess.run(
        [sys.executable, "-m", "socialguard", *args],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return res.stdout


def assert_clean(out: bytes) -> str:
    """Valid UTF-8 with no control, C1 or bidi character but newlines; the text."""
    text = out.decode("utf-8")
    found = RAW.findall(text)
    assert not found, f"raw characters reached the output: {found!r}"
    return text


def send_raw(proxy: Any, request: bytes) -> bytes:
    """One request over a plain socket (curl refuses header values this long or this odd)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def error_records(proxy: Any) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if r.get("basis") == "error"]


def local(record: dict[str, Any]) -> str:
    """The record's time as the commands show it with --tz UTC."""
    ts = datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------------- the Host header


def test_a_host_with_terminal_escapes_is_shown_escaped_by_audit_tail_and_search(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    host = f"www.exa{TITLE}mple.org{CLEAR}{RLO}gro"
    res = curl(proxy, "http://www.example.org/", "-H", f"Host: {host}")
    assert res.status == 403  # not a host name: refused, and logged with basis error
    assert not origin.saw(b"pwned")
    [record] = error_records(proxy)
    assert record["host"] == host  # the record keeps the evidence, JSON-escaped
    shown = "www.exa\\x1b]0;pwned\\x07mple.org\\x1b[2J\\u202egro"
    log = ("--log-dir", str(proxy.log_dir), "--tz", "UTC")

    tail = assert_clean(sg("audit", "tail", "-n", "5", *log))
    assert (
        f"{local(record)}  block  error  ip:127.0.0.1  {shown}  {record['decision_id']}  test\n"
        in tail
    )

    table = assert_clean(sg("audit", "search", "--basis", "error", *log))
    assert shown in table

    rows = list(
        csv.reader(
            io.StringIO(assert_clean(sg("audit", "search", "--csv", "--basis", "error", *log)))
        )
    )
    assert rows[1] == [
        local(record),
        "block",
        "error",
        "ip:127.0.0.1",
        "",
        shown,
        "",
        "",
        "",
        record["decision_id"],
        "test",
    ]


def test_audit_search_json_is_the_record_with_bidi_and_c1_characters_escaped(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    host = f"www.exa{TITLE}mple.org\u009b2J{RLO}gro"
    assert curl(proxy, "http://www.example.org/", "-H", f"Host: {host}").status == 403
    out = sg("audit", "search", "--json", "--basis", "error", "--log-dir", str(proxy.log_dir))
    [line] = assert_clean(out).splitlines()
    assert json.loads(line)["host"] == host  # the same value, as JSON a terminal cannot obey


def test_a_host_header_of_a_megabyte_is_capped_in_the_record(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    host = "a" * (1 << 20) + ".org"
    answer = send_raw(
        proxy,
        f"GET http://www.example.org/ HTTP/1.1\r\nHost: {host}\r\n{CLOSE}".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 403")
    [record] = error_records(proxy)
    assert record["host"] == host[:255]
    assert "host" in record["masked"]  # declared, as the schema promises for what it shortens
    longest = max(
        len(line) for f in proxy.log_dir.glob("*.jsonl") for line in f.read_bytes().splitlines()
    )
    assert longest < 4096


def test_a_host_with_a_bare_carriage_return_cannot_forge_a_line_of_output(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy()
    answer = send_raw(
        proxy,
        f"GET http://www.example.org/ HTTP/1.1\r\nHost: x\rFAKE  allow  rule\r\n{CLOSE}".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 4")
    records = error_records(proxy)
    if not records:
        pytest.skip("mitmproxy refused the request before socialguard saw it")
    tail = assert_clean(
        sg("audit", "tail", "-n", "5", "--log-dir", str(proxy.log_dir), "--tz", "UTC")
    )
    assert "x\\x0dFAKE  allow  rule" in tail


# ------------------------------------------------------------------------- the forms' reasons


def form_token(proxy: Any, form: str) -> str:
    page = curl(proxy, "https://www.facebook.com/some/page", *HTML)
    assert page.status == 403
    tokens = dict(
        re.findall(r'action="/\.socialguard/(\w+)".*?name="token" value="([^"]+)"', page.body)
    )
    return tokens[form]


def post_form(proxy: Any, form: str, reason: str) -> Any:
    token = form_token(proxy, form)
    return curl(
        proxy,
        f"https://www.facebook.com/.socialguard/{form}",
        "--data-urlencode", f"token={token}",
        "--data-urlencode", f"reason={reason}",
    )  # fmt: skip


def wait_for_admin(proxy: Any, action: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [
            r for r in proxy.records() if r.get("type") == "admin" and r.get("action") == action
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {action} in the decision log after {WAIT_S} s"
        time.sleep(0.1)


@pytest.fixture
def proxy_with_reasons(start_proxy: Any) -> tuple[Any, dict[str, str]]:
    """A proxy whose block-page forms were posted with hostile reasons (an emergency and an
    access request), both in its store and, through the outbox, in its decision log."""
    proxy = start_proxy(rules_text=RULES, at=datetime.now(UTC) + timedelta(minutes=1))
    # 50 harmless characters, then the escapes: a 60-column cut would fall inside them
    emergency = (
        "Lockdown at my child's school, I must reach them "
        + TITLE
        + "now"
        + CLEAR
        + RLO
        + "gnp.exe"
    )
    request = '=HYPERLINK("http://evil.example/","Open the report")' + TITLE
    # the request first: the emergency opens the site for this address, and its forms with it
    assert post_form(proxy, "request", request).status == 200
    assert post_form(proxy, "emergency", emergency).status == 200
    wait_for_admin(proxy, "emergency_self_declared")
    wait_for_admin(proxy, "access_requested")
    return proxy, {"emergency": emergency, "request": request}


def store_env(proxy: Any) -> dict[str, str]:
    return {
        "SOCIALGUARD_STATE": str(proxy.rules.parent / "state"),
        "SOCIALGUARD_RULES": str(proxy.rules),
    }


def test_emergency_review_shows_a_hostile_reason_escaped_and_never_cuts_an_escape(
    proxy_with_reasons: tuple[Any, dict[str, str]],
) -> None:
    proxy, _ = proxy_with_reasons
    out = assert_clean(sg("emergency", "review", env=store_env(proxy)))
    header, row = out.splitlines()
    assert header.endswith("REASON")
    # 60 columns: the escapes are shown, and the cut falls between whole characters
    assert row.endswith("  Lockdown at my child's school, I must reach them \\x1b]0;pwn…")


def test_grant_requests_shows_a_hostile_reason_escaped(
    proxy_with_reasons: tuple[Any, dict[str, str]],
) -> None:
    proxy, _ = proxy_with_reasons
    out = assert_clean(sg("grant", "requests", env=store_env(proxy)))
    assert out.splitlines()[1].endswith('  =HYPERLINK("http://evil.example/","Open…')


def test_audit_report_text_and_html_show_hostile_reasons_escaped(
    proxy_with_reasons: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    proxy, _ = proxy_with_reasons
    page = tmp_path / "report.html"
    text = assert_clean(
        sg("audit", "report", "--log-dir", str(proxy.log_dir), "--tz", "UTC", "--html", str(page))
    )
    shown = "Lockdown at my child's school, I must reach them " + (
        "\\x1b]0;pwned\\x07now\\x1b[2J\\u202egnp.exe"
    )
    assert shown in text
    html_text = assert_clean(page.read_bytes())
    assert html.escape(shown) in html_text


def test_audit_tail_and_search_show_hostile_reasons_escaped(
    proxy_with_reasons: tuple[Any, dict[str, str]],
) -> None:
    proxy, _ = proxy_with_reasons
    log = ("--log-dir", str(proxy.log_dir), "--tz", "UTC")
    for out in (sg("audit", "tail", "-n", "50", *log), sg("audit", "search", *log)):
        assert "\\x1b]0;pwned\\x07" in assert_clean(out)


def test_audit_search_csv_cells_are_never_formulas(
    proxy_with_reasons: tuple[Any, dict[str, str]],
) -> None:
    proxy, _ = proxy_with_reasons
    out = assert_clean(
        sg("audit", "search", "--csv", "--log-dir", str(proxy.log_dir), "--tz", "UTC")
    )
    rows = list(csv.reader(io.StringIO(out)))
    # the admin event carries the reason (the form's own record says only that it was filed)
    [requested] = [r for r in rows if r[1:3] == ["access_requested", "admin"]]
    assert (
        requested[8] == '\'=HYPERLINK("http://evil.example/","Open the report")\\x1b]0;pwned\\x07'
    )
    for row in rows:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@"), f"a formula cell: {cell!r}"
