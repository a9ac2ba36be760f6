"""What the network chooses is capped in the record, and the record says so (`masked`)."""

from __future__ import annotations

from socialguard.audit.schema import MAX_HOST, MAX_METHOD, MAX_URL, admin_event, decision_event
from socialguard.engine import Action, Basis, Decision, Principal


def _decision(host: str) -> Decision:
    return Decision(
        action=Action.BLOCK,
        basis=Basis.ERROR,
        reason="could not decide",
        principal=Principal(client_ip="10.0.0.5"),
        policy_version="v1",
        host=host,
    )


def test_a_long_host_sni_and_method_are_capped_and_declared() -> None:
    event = decision_event(
        _decision("h" * 10_000),
        decision_id="X",
        stage="request",
        client="10.0.0.5",
        method="M" * 1000,
        sni="s" * 10_000,
    )
    assert event["host"] == "h" * MAX_HOST
    assert event["sni"] == "s" * MAX_HOST
    assert event["method"] == "M" * MAX_METHOD
    assert event["masked"] == ["host", "sni", "method"]


def test_values_within_their_caps_are_kept_whole_and_nothing_is_declared() -> None:
    event = decision_event(
        _decision("www.example.org"), decision_id="X", stage="connection", client="10.0.0.5"
    )
    assert event["host"] == "www.example.org"
    assert "masked" not in event


def test_an_admin_events_long_url_is_capped_and_declared() -> None:
    url = "https://www.facebook.com/" + "p" * 5000 + "?secret=1"
    event = admin_event(
        "access_requested", by="ip:10.0.0.5", source="10.0.0.5", target="r-1", reason="why",
        details={"url": url},
    )  # fmt: skip
    assert event["details"]["url"] == url.split("?", maxsplit=1)[0][:MAX_URL]
    assert event["masked"] == ["details.url"]
    assert event["erased"] == ["details.url.query"]
