"""Whose daily allowance a block-page form spends (engine/limits.py)."""

from __future__ import annotations

from socialguard.engine import Principal
from socialguard.engine.limits import Allowance, allowances, person_key


def _spend(p: Principal) -> tuple[Allowance, ...]:
    return allowances(p, per_person=2, per_unidentified=5, what="emergency")


def test_a_signed_in_user_spends_their_own_allowance_from_any_address() -> None:
    for ip in ("10.0.0.5", "10.9.9.9"):
        p = Principal(client_ip=ip, user="jdoe", device="laptop-17")
        assert _spend(p) == (Allowance("user:jdoe", 2, "emergency_per_day"),)


def test_a_known_device_spends_its_own_allowance() -> None:
    p = Principal(client_ip="10.0.0.5", device="laptop-17")
    assert _spend(p) == (Allowance("device:laptop-17", 2, "emergency_per_day"),)


def test_an_address_alone_also_spends_the_allowance_every_unidentified_principal_shares() -> None:
    p = Principal(client_ip="10.0.0.5")
    assert person_key(p) == "ip:10.0.0.5"
    assert _spend(p) == (
        Allowance("ip:10.0.0.5", 2, "emergency_per_day"),
        Allowance("ip:", 5, "emergency_per_day_unidentified", shared=True),
    )
