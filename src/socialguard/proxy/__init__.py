"""socialguard.proxy: the mitmproxy addon, its block page, rules hot reload, and `run_proxy`.

from socialguard.proxy import ProxyConfig, serve
asyncio.run(serve(ProxyConfig(rules=..., certs=..., state=..., log_dir=...), handle_signals=True))
"""

from __future__ import annotations

from .addon import SocialGuard
from .clock import Clock, ManualClock, SystemClock
from .run import (
    ProxyConfig,
    ProxyMode,
    ensure_ca,
    parse_listen,
    parse_mode,
    run_proxy,
    serve,
)

__all__ = [
    "Clock",
    "ManualClock",
    "ProxyConfig",
    "ProxyMode",
    "SocialGuard",
    "SystemClock",
    "ensure_ca",
    "parse_listen",
    "parse_mode",
    "run_proxy",
    "serve",
]
