"""The connect timeout's option and deadline (the end-to-end case is in tests/adversarial)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mitmproxy import connection, exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from conftest import TEST_RULES  # type: ignore[import-not-found]
from socialguard.proxy import SocialGuard
from socialguard.proxy.timeouts import ConnectTimeouts, parse_connect_timeout


@pytest.mark.parametrize("value", [0.0, -1.0, 301.0])
def test_a_connect_timeout_outside_its_range_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="socialguard_connect_timeout"):
        parse_connect_timeout(value)


@pytest.mark.parametrize("value", [0.5, 10.0, 300.0])
def test_a_connect_timeout_in_range_is_kept(value: float) -> None:
    assert parse_connect_timeout(value) == value


def _server() -> connection.Server:
    return connection.Server(address=("192.0.2.1", 443))


def test_an_attempt_past_its_deadline_is_cancelled_with_the_reason() -> None:
    async def attempt() -> str:
        timeouts = ConnectTimeouts(0.01)
        timeouts.arm(_server())
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError as e:
            return str(e)
        return "not cancelled"

    assert "no connection to the origin within 0.01 s" in asyncio.run(attempt())


def test_a_completed_attempt_is_not_cancelled() -> None:
    async def attempt() -> bool:
        timeouts = ConnectTimeouts(0.01)
        server = _server()
        timeouts.arm(server)
        timeouts.disarm(server)
        await asyncio.sleep(0.05)  # past the deadline: nothing may fire
        return True

    assert asyncio.run(attempt())


def test_arming_outside_an_event_loop_does_nothing() -> None:
    timeouts = ConnectTimeouts(0.01)
    timeouts.arm(_server())
    timeouts.disarm(_server())


def test_the_addon_refuses_a_bad_connect_timeout_and_keeps_the_old(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TEST_RULES)
    addon = SocialGuard()
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.configure(
            addon,
            connection_strategy="lazy",
            socialguard_rules=str(rules),
            socialguard_state=str(tmp_path / "state"),
            socialguard_log_dir=str(tmp_path / "log"),
            socialguard_node="unit",
            socialguard_connect_timeout=5.0,
        )
        try:
            with pytest.raises(exceptions.OptionsError, match="socialguard_connect_timeout"):
                tctx.configure(addon, socialguard_connect_timeout=0.0)
            assert tctx.options.socialguard_connect_timeout == 5.0
        finally:
            addon.done()
