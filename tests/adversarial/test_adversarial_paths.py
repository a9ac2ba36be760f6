"""Issue 17, item 4: an approved page (`urls:`) cannot be left by spelling its path differently.

The proxy decides on the path as an origin that normalises would read it (dot segments, escaped
dots, duplicate slashes, backslashes, escape case, the port), forwards that very form, and refuses
a path that origins read in different ways (an escaped slash or backslash, a dot segment with
`;` parameters, an escaped percent sign before hex). Each case asserts on what reached the
recording origin and on the decision log.
"""

from __future__ import annotations

from typing import Any

import pytest
from raw_requests import get, raw_https  # type: ignore[import-not-found]

from conftest import TEST_RULES, curl  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

FB = "www.facebook.com"
BLOCKING_RULE = "staff-social-school-hours"
# default allow, and one page of an otherwise allowed site blocked by a `urls:` block rule
PRIVATE_PAGE_RULES = TEST_RULES.replace(
    "rules:\n",
    "rules:\n"
    "  - id: private-pages\n"
    "    description: The intranet's private pages stay closed\n"
    "    who: [staff]\n"
    "    what:\n"
    '      urls: ["https://www.example.org/private/"]\n'
    "    action: block\n",
    1,
)


def targets(origin: Any) -> list[bytes]:
    """The request target of every request the origin received."""
    return [head.split(b" ", 2)[1] for c in origin.connections for head in c.requests]


def request_records(proxy: Any, host: str = FB) -> list[dict[str, Any]]:
    """The decision log's request-stage records for `host`."""
    return [r for r in proxy.records() if r.get("host") == host and r.get("stage") == "request"]


ESCAPES = [
    "/ExampleSchoolDistrict/../private/",
    "/ExampleSchoolDistrict/%2e%2e/private/",
    "/ExampleSchoolDistrict/%2E%2e/private/",
    "/ExampleSchoolDistrict/.%2e/private/",
    "/ExampleSchoolDistrict/x/../../private/",
    "/ExampleSchoolDistrict/..",
    "/ExampleSchoolDistrict\\..\\private/",
]
AMBIGUOUS = [
    "/ExampleSchoolDistrict/..%2fprivate/",
    "/ExampleSchoolDistrict/%2e%2e%2Fprivate/",
    "/ExampleSchoolDistrict/..%5cprivate/",
    "/ExampleSchoolDistrict/..;/private/",
    "/ExampleSchoolDistrict/%252e%252e/private/",
    "/ExampleSchoolDistrict/%zz/../private/",
]


@pytest.mark.parametrize("target", ESCAPES)
def test_dot_segments_do_not_leave_an_approved_page(
    start_proxy: Any, origin: Any, target: str
) -> None:
    proxy = start_proxy()
    answer = raw_https(proxy, FB, get(target, FB))
    assert answer.status == 403
    assert not any(b"private" in t or (t != b"/" and b".." in t) for t in targets(origin))
    [record] = request_records(proxy)
    assert (record["action"], record["rule"]) == ("block", BLOCKING_RULE)


@pytest.mark.parametrize("target", AMBIGUOUS)
def test_a_path_origins_read_differently_is_refused_on_an_approved_pages_host(
    start_proxy: Any, origin: Any, target: str
) -> None:
    proxy = start_proxy()
    answer = raw_https(proxy, FB, get(target, FB))
    assert answer.status in (400, 403)
    assert not any(b"private" in t for t in targets(origin))
    [record] = request_records(proxy)
    assert record["action"] == "block"


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/ExampleSchoolDistrict//photos", b"/ExampleSchoolDistrict/photos"),
        ("/ExampleSchoolDistrict/./photos/", b"/ExampleSchoolDistrict/photos/"),
        ("/ExampleSchoolDistrict/a/../photos", b"/ExampleSchoolDistrict/photos"),
        ("/%45xampleSchoolDistrict/photos", b"/ExampleSchoolDistrict/photos"),
        ("/ExampleSchoolDistrict/%c3%a9?n=%2f..%2f", b"/ExampleSchoolDistrict/%C3%A9?n=%2f..%2f"),
        ("/ExampleSchoolDistrict\\photos", b"/ExampleSchoolDistrict/photos"),
    ],
)  # fmt: skip
def test_an_approved_page_reaches_the_origin_in_the_form_it_was_decided_on(
    start_proxy: Any, origin: Any, target: str, forwarded: bytes
) -> None:
    proxy = start_proxy()
    answer = raw_https(proxy, FB, get(target, FB))
    assert answer.status == 200
    assert targets(origin) == [forwarded]
    [record] = request_records(proxy)
    assert (record["action"], record["rule"]) == ("allow", "approved-district-pages")


def test_the_issues_curl_requests_do_not_reach_other_pages(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    for target in ("/ExampleSchoolDistrict/../private/", "/ExampleSchoolDistrict/%2e%2e/private/"):
        res = curl(proxy, f"https://{FB}{target}", "--path-as-is", "-H", "Accept: text/html")
        assert res.status == 403
    assert not origin.saw(b"private")
    assert [r["action"] for r in request_records(proxy)] == ["block", "block"]


def test_an_approved_page_on_another_port_is_not_approved(start_proxy: Any, origin: Any) -> None:
    proxy = start_proxy()
    res = curl(proxy, f"https://{FB}:8443/ExampleSchoolDistrict/", "-H", "Accept: text/html")
    assert res.status == 403
    assert not origin.saw(b"ExampleSchoolDistrict")
    res = curl(proxy, f"https://{FB}:443/ExampleSchoolDistrict/")
    assert res.status == 200
    assert targets(origin) == [b"/ExampleSchoolDistrict/"]
    assert [r["action"] for r in request_records(proxy)] == ["block", "allow"]


@pytest.mark.parametrize(
    "target",
    [
        "/public/../private/report",
        "/public/%2e%2e/private/report",
        "/public//..//private/report",
        "/%70rivate/report",
        "//private/report",
        "/public/..%2fprivate/report",
        "/private;x/report",
    ],
)
def test_a_blocked_page_cannot_be_reached_by_a_detour(
    start_proxy: Any, origin: Any, target: str
) -> None:
    proxy = start_proxy(PRIVATE_PAGE_RULES)
    host = "www.example.org"
    answer = raw_https(proxy, host, get(target, host))
    assert answer.status in (400, 403)
    assert not any(b"private" in t for t in targets(origin))
    assert [r["action"] for r in request_records(proxy, host)] == ["block"]


def test_the_rest_of_a_site_with_a_blocked_page_is_forwarded_as_sent(
    start_proxy: Any, origin: Any
) -> None:
    proxy = start_proxy(PRIVATE_PAGE_RULES)
    host = "www.example.org"
    answer = raw_https(proxy, host, get("/public/report?x=%2F", host))
    assert answer.status == 200
    assert targets(origin) == [b"/public/report?x=%2F"]
