"""Request's hand-written __init__ takes exactly the dataclass's fields and sets every one."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socialguard.engine.model import Request


def test_init_takes_the_fields_in_order_with_their_defaults() -> None:
    params = list(inspect.signature(Request.__init__).parameters.values())[1:]
    fields = dataclasses.fields(Request)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert p.default == expected, f.name


@given(
    host=st.text(max_size=5),
    port=st.none() | st.integers(0, 65535),
    upload=st.booleans(),
    sni=st.none() | st.text(max_size=5),
)
def test_every_field_is_set_and_equal_requests_are_equal(
    host: str, port: int | None, upload: bool, sni: str | None
) -> None:
    a = Request(host, "http", "POST", "/p", port, sni, upload, "text/plain", "*/*")
    b = Request(
        host=host, scheme="http", method="POST", path="/p", port=port, sni=sni, upload=upload,
        content_type="text/plain", accept="*/*",
    )  # fmt: skip
    assert a == b and hash(a) == hash(b)
    fields = (host, "http", "POST", "/p", port, sni, upload, "text/plain", "*/*")
    assert dataclasses.astuple(a) == fields
    assert dataclasses.replace(a, host="other") != a


def test_it_stays_frozen() -> None:
    r = Request("a.example")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.host = "b.example"  # type: ignore[misc]
