"""Sign-in bindings in the identity service: in the snapshot at once, in `<state>/identity.db` for
`who` and a restart, ended by sign-out, and gone when the rules no longer have a sign-in page."""

from __future__ import annotations

import time
from pathlib import Path

from socialguard.engine.identity import Binding, IdentitySpec
from socialguard.identity import IdentityService

SPEC = IdentitySpec.model_validate(
    {
        "networks": ["10.40.0.0/16"],
        "unidentified": "sign-in",
        "sign_in": {
            "portal": "sign-in.district.example",
            "oidc": {
                "issuer": "https://idp.district.example",
                "client_id": "c",
                "client_secret_file": "s",
            },
        },
    }
)


def jdoe(now: float) -> Binding:
    return Binding(
        "10.40.1.2", "sign-in", user="jdoe", groups=frozenset({"Staff"}), start=now,
        until=now + 3600,
    )  # fmt: skip


def test_a_restarted_service_keeps_the_signed_in_until_their_session_ends(tmp_path: Path) -> None:
    now = time.time()
    first = IdentityService()
    first.configure(SPEC, tmp_path, tmp_path / "state")
    assert first.active
    first.sign_in(jdoe(now))
    assert first.person("10.40.1.2") == jdoe(now)
    first.stop()

    again = IdentityService()
    again.configure(SPEC, tmp_path, tmp_path / "state")
    try:
        assert again.person("10.40.1.2") == jdoe(now)
        again.clock = lambda: now + 3601
        assert again.person("10.40.1.2") is None  # the session is over
    finally:
        again.stop()


def test_sign_out_ends_the_binding_in_the_snapshot_and_the_store(tmp_path: Path) -> None:
    now = time.time()
    svc = IdentityService()
    svc.configure(SPEC, tmp_path, tmp_path / "state")
    svc.sign_in(jdoe(now))
    assert svc.sign_out("10.40.1.2") == jdoe(now)
    assert svc.person("10.40.1.2") is None
    assert svc.sign_out("10.40.1.2") is None  # nothing left to end
    svc.stop()
    again = IdentityService()
    again.configure(SPEC, tmp_path, tmp_path / "state")
    try:
        assert again.person("10.40.1.2") is None
    finally:
        again.stop()


def test_rules_without_a_sign_in_page_end_its_bindings(tmp_path: Path) -> None:
    svc = IdentityService()
    svc.configure(SPEC, tmp_path, tmp_path / "state")
    try:
        svc.sign_in(jdoe(time.time()))
        svc.configure(IdentitySpec(networks=["10.40.0.0/16"]), tmp_path, tmp_path / "state")
        assert svc.person("10.40.1.2") is None
    finally:
        svc.stop()
