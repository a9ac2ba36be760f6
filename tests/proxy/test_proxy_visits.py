"""Which requests are visits (a person opening a page) rather than what the page loads."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from socialguard.proxy.visits import is_visit

NAVIGATE = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document",
            "accept": "text/html,application/xhtml+xml"}  # fmt: skip


def head(headers: dict[str, str]) -> Headers:
    return Headers(**{k.replace("-", "_"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("headers", "visit"),
    [
        (NAVIGATE, True),
        ({"sec-fetch-mode": "navigate"}, True),
        ({"sec-fetch-dest": "Document"}, True),
        ({"sec-fetch-mode": "navigate", "sec-fetch-dest": "iframe"}, False),
        ({"sec-fetch-mode": "no-cors", "sec-fetch-dest": "image", "accept": "image/*"}, False),
        ({"sec-fetch-mode": "no-cors", "sec-fetch-dest": "style", "accept": "text/css"}, False),
        ({"sec-fetch-mode": "cors", "sec-fetch-dest": "empty", "accept": "text/html"}, False),
        ({"accept": "text/html,*/*"}, True),  # an old client: no Fetch Metadata
        ({"accept": "*/*"}, False),
        ({}, False),
    ],
)
def test_a_visit_is_a_page_navigation(headers: dict[str, str], visit: bool) -> None:
    assert is_visit(head(headers)) is visit
