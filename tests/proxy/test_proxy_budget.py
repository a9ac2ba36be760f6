"""The held uploads' shared budget: its option, and reservations given back exactly once."""

from __future__ import annotations

import gc

import pytest

from socialguard.proxy.budget import UploadBudget, parse_upload_memory


@pytest.mark.parametrize("raw", ["", "512k", "lots", "-1m"])
def test_a_bad_upload_memory_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="socialguard_upload_memory"):
        parse_upload_memory(raw)


@pytest.mark.parametrize(("raw", "size"), [("1m", 1 << 20), ("64m", 64 << 20), ("1g", 1 << 30)])
def test_an_upload_memory_is_a_size(raw: str, size: int) -> None:
    assert parse_upload_memory(raw) == size


def test_a_hold_that_does_not_fit_is_not_made() -> None:
    budget = UploadBudget(100)
    first = budget.reserve(60)
    assert first is not None
    assert budget.reserve(50) is None
    assert budget.held == 60
    first.release()
    first.release()  # idempotent: given back once
    assert budget.held == 0
    assert budget.reserve(100) is not None


def test_a_reservation_is_given_back_when_its_owner_goes() -> None:
    class Flow:
        pass

    budget = UploadBudget(100)
    owner = Flow()
    assert budget.reserve(80, owner=owner) is not None
    del owner
    gc.collect()
    assert budget.held == 0
