"""What `socialguard run` carries of mitmproxy: the addons a filter needs, and none that would
rewrite, replay or save traffic on an option (run.filter_addons)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import curl  # type: ignore[import-not-found]
from socialguard.errors import ConfigError
from socialguard.proxy import ProxyMode

pytestmark = pytest.mark.e2e


def test_devices_fetch_the_proxy_ca_from_mitm_it(start_proxy: Any) -> None:
    """mitmproxy's onboarding app stays: it is how a district's devices get the CA to trust."""
    proxy = start_proxy()
    r = curl(proxy, "http://mitm.it/cert/pem")
    assert r.status == 200
    assert r.body == proxy.ca.read_text()
    assert any(rec.get("host") == "mitm.it" for rec in proxy.records())  # decided and recorded


@pytest.mark.parametrize(
    "option, value",
    [
        ("modify_headers", ["/~q/X-Injected/1"]),
        ("map_remote", ["|example.org|example.net"]),
        ("server_replay", ["flows.bin"]),
        ("save_stream_file", "flows.bin"),
        ("scripts", ["addon.py"]),
    ],
)
def test_options_that_would_rewrite_replay_or_save_traffic_are_unknown(
    start_proxy: Any, option: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=option):
        start_proxy(**{option: value})


def test_mitmproxys_protections_stay_in_the_chain(start_proxy: Any) -> None:
    """block_global (never an open proxy), h2c stripping and ECH key stripping are mitmproxy's
    defaults that a filter relies on; the rest of mitmdump's chain is gone."""
    addons = start_proxy().master.addons
    for name in ("block", "disableh2c", "stripdnshttpsrecords", "onboarding", "errorcheck"):
        assert addons.get(name) is not None, name
    for name in ("modifyheaders", "maplocal", "save", "scriptloader", "clientplayback"):
        assert addons.get(name) is None, name


@pytest.mark.parametrize("mode", list(ProxyMode))
def test_every_mode_of_socialguard_run_starts_on_the_filters_chain(
    start_proxy: Any, mode: ProxyMode
) -> None:
    """Each mode `socialguard run` offers brings up its own listener on the filter's chain (the
    mode servers need nothing of the addons left out), and no other listener."""
    servers = list(start_proxy(mode=mode).master.addons.get("proxyserver").servers)
    assert [(s.mode.type_name, s.is_running) for s in servers] == [(mode.value, True)]
