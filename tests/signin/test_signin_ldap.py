"""Password sign-in on the sign-in page against a real OpenLDAP `slapd` (tests/slapd_district.py):
a right password binds the device to the person and their directory groups decide; a wrong one,
a token from another device or a plain-HTTP post binds no one, and no password is ever logged."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_signin_flow import browser, events, request_records  # type: ignore[import-not-found]

from conftest import PORTAL  # type: ignore[import-not-found]
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

StartProxy = Callable[..., Any]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if SLAPD is None:
        pytest.skip("needs slapd (apt-get install slapd ldap-utils)")
    server = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()


def ldap_rules(slapd: Slapd, tmp: Path) -> str:
    (tmp / "bind.pw").write_text(SERVICE_PASSWORD + "\n")
    return f"""\
district:
  name: Test District
  timezone: America/Denver
schedules:
  school-hours:
    weekly:
      mon-fri: ["07:30-16:00"]
groups:
  staff:
    networks: [127.0.0.0/8]
categories:
  social:
    domains: [facebook.com, instagram.com]
rules:
  - id: staff-social-school-hours
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
default: allow
identity:
  directory:
    url: {slapd.ldaps_url}
    ca_file: {slapd.ca_file}
    bind_dn: {SERVICE_DN}
    bind_password_file: {tmp / "bind.pw"}
    user_base: {PEOPLE}
    group_base: {GROUPS}
  groups:
    teachers: [staff]
  networks: [127.0.0.0/8]
  unidentified: sign-in
  sign_in:
    portal: {PORTAL}
    ldap: true
"""


def password_form(b: Any, next_url: str = "https://www.facebook.com/") -> dict[str, str]:
    page = b.get(f"https://{PORTAL}/", params={"next": next_url}).text
    assert 'type="password"' in page and 'for="sg-pass"' in page
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    return {k: v.replace("&amp;", "&") for k, v in fields.items()}


def test_a_right_password_binds_the_person_and_their_directory_groups_decide(
    start_proxy: StartProxy, slapd: Slapd, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(ldap_rules(slapd, tmp_path))
    with browser(proxy) as b:
        assert b.get("https://www.facebook.com/").status_code == 302
        form = password_form(b)
        done = b.post(
            f"https://{PORTAL}/password",
            data={**form, "username": "alice", "password": PASSWORDS["alice"]},
        )
        assert done.status_code == 303
        assert done.headers["location"] == "https://www.facebook.com/"
        assert b.get("https://www.facebook.com/").status_code == 403  # a teacher: staff
    record = request_records(proxy, "www.facebook.com")[-1]
    assert (record["user"], record["identified_by"], record["groups"]) == (
        "alice", "sign-in", ["staff"],
    )  # fmt: skip
    assert [(e["user"], e["method"]) for e in events(proxy, "signed_in")] == [("alice", "ldap")]
    assert not origin.saw(b"facebook")


def test_a_wrong_password_binds_no_one_and_is_never_logged(
    start_proxy: StartProxy, slapd: Slapd, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(ldap_rules(slapd, tmp_path))
    with browser(proxy) as b:
        form = password_form(b)
        wrong = b.post(
            f"https://{PORTAL}/password",
            data={**form, "username": "alice", "password": "guessed-Pa55word"},
        )
        assert wrong.status_code == 403
        assert b.get("https://www.facebook.com/").status_code == 302  # still must sign in
    refused = events(proxy, "refused")
    assert [(e["reason"], e["username"]) for e in refused] == [("bad_password", "alice")]
    log = "\n".join(f.read_text() for f in proxy.log_dir.glob("*.jsonl"))
    assert "guessed-Pa55word" not in log
    assert proxy.addon.sign_in.refused == {"bad_password": 1}


def test_a_password_form_token_from_another_device_is_refused(
    start_proxy: StartProxy, slapd: Slapd, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(ldap_rules(slapd, tmp_path))
    with browser(proxy, "127.0.0.2") as b:
        form = password_form(b)
    with browser(proxy, "127.0.0.3") as other:
        answer = other.post(
            f"https://{PORTAL}/password",
            data={**form, "username": "alice", "password": PASSWORDS["alice"]},
        )
        assert answer.status_code == 403
        assert other.get("https://www.facebook.com/").status_code == 302
    assert [e["reason"] for e in events(proxy, "refused")] == ["bad_token"]


def test_a_password_posted_over_plain_http_is_refused_unread(
    start_proxy: StartProxy, slapd: Slapd, origin: Any, tmp_path: Path
) -> None:
    proxy = start_proxy(ldap_rules(slapd, tmp_path))
    with browser(proxy) as b:
        form = password_form(b)
        answer = b.post(
            f"http://{PORTAL}/password",
            data={**form, "username": "alice", "password": PASSWORDS["alice"]},
        )
        assert answer.status_code == 403
        assert b.get("https://www.facebook.com/").status_code == 302
    assert [e["reason"] for e in events(proxy, "refused")] == ["plain_http"]
    log = "\n".join(f.read_text() for f in proxy.log_dir.glob("*.jsonl"))
    assert PASSWORDS["alice"] not in log
    assert origin.count() == 0
