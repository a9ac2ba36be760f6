"""Entry point for `mitmdump -s addons/socialguard.py` (the secondary way to run socialguard).

    mitmdump -s addons/socialguard.py --set socialguard_rules=rules/policy.yaml

Prefer `socialguard run`: it embeds the addon, so it cannot be unloaded. mitmproxy reloads `-s`
scripts when they change and, if a reload fails, runs on without the addon — unfiltered.

Run this way, mitmproxy's own defaults would not be socialguard's: its CA in ~/.mitmproxy, every
interface, `eager` connections (under which a refused ClientHello has already been forwarded).
So options left at mitmproxy's default are set as `socialguard run` sets them: the CA in certs/
(or $SOCIALGUARD_CERTS), listening on 127.0.0.1, connection_strategy=lazy. Anything given on the
command line stays as given (mitmproxy cannot tell an explicit `eager` from its default: the
strategy is always lazy here); a configuration the addon refuses is said in one line, not a
traceback.
"""

import sys
from pathlib import Path

# mitmproxy puts this file's directory first on sys.path, where `socialguard` would be this very
# file; the installed package is the one meant.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if getattr(sys.modules.get("socialguard"), "__file__", None) == str(_HERE / "socialguard.py"):
    del sys.modules["socialguard"]

import logging  # noqa: E402
from typing import Any  # noqa: E402

from mitmproxy import ctx, exceptions  # noqa: E402
from mitmproxy.proxy.mode_specs import ProxyMode  # noqa: E402
from mitmproxy.utils import asyncio_utils  # noqa: E402

from socialguard import paths  # noqa: E402 - after the sys.path fix above
from socialguard.fsmode import restrict_umask  # noqa: E402 - after the sys.path fix above
from socialguard.proxy import SocialGuard  # noqa: E402 - after the sys.path fix above


def script_defaults() -> dict[str, str]:
    """socialguard's values for the mitmproxy options still at mitmproxy's default."""
    wanted = {
        "confdir": str(paths.certs_dir().resolve()),
        "listen_host": "127.0.0.1",
        "connection_strategy": "lazy",
    }
    return {k: v for k, v in wanted.items() if not ctx.options.has_changed(k)}


class ScriptDefaults:
    """Sets script_defaults() when the script loads.

    mitmproxy loads `-s` scripts in a task that races its own start of the listeners, which
    usually win: so when listen_host changes here, the listeners are stopped and started again
    on the new address (a moment on every interface, before the filter is loaded anyway, is the
    price of `-s`; `socialguard run` binds once, on the right address).
    """

    def load(self, loader: Any) -> None:
        updates = script_defaults()
        ctx.options.update(**updates)
        if "listen_host" in updates:
            asyncio_utils.create_task(
                _restart_listeners(), name="socialguard listeners", keep_ref=True
            )


async def _restart_listeners() -> None:
    proxyserver: Any = ctx.master.addons.get("proxyserver")
    if proxyserver is None:
        return
    modes = [ProxyMode.parse(m) for m in ctx.options.mode]
    await proxyserver.servers.update([])
    await proxyserver.servers.update(modes)


class ScriptSocialGuard(SocialGuard):
    """The addon, with a refused first configuration said in one line instead of a traceback
    (mitmproxy prints one for any exception a script raises). mitmdump then exits: an error was
    logged during start-up. Later changes still raise, so mitmproxy rolls them back."""

    def configure(self, updated: set[str]) -> None:
        try:
            super().configure(updated)
        except exceptions.OptionsError as e:
            if self.configured:
                raise
            logging.getLogger("socialguard").error("socialguard: %s", e)


restrict_umask()  # the store, keys and log it creates are not for other accounts
addons = [ScriptDefaults(), ScriptSocialGuard()]
