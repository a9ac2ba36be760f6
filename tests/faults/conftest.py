"""Fixtures for the fault suite: the proxy tests' harness (real mitmproxy + addon, loopback
upstreams, ManualClock), loaded under its own module name as tests/uploads_e2e does.

Every fault test asserts what users rely on: traffic decided per the last good policy, nothing
forwarded undecided (the steering addon lists every upstream connection), nothing recorded lost.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_HARNESS = Path(__file__).resolve().parent.parent / "proxy" / "conftest.py"


def _load_harness() -> Any:
    name = "socialguard_proxy_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
# Everything the harness defines, under this module too: tests/proxy's modules `from conftest import
# ...`, and in a run that collects this directory first, `conftest` is this module.
globals().update({k: v for k, v in vars(harness).items() if not k.startswith("__")})
