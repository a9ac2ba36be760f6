"""The proxy tests' harness (tests/proxy/conftest.py: real mitmproxy + addon, loopback upstreams,
ManualClock, curl), loaded once under its own module name for the other test directories.

Test directories are not packages, so a conftest cannot import another one by path; this loads it
as `socialguard_proxy_harness`, the name test modules may import from.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "socialguard_proxy_harness"
_HARNESS = Path(__file__).resolve().parent / "proxy" / "conftest.py"


def load_proxy_harness() -> ModuleType:
    """The harness module (loaded on the first call, shared by every later one)."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(NAME, _HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module
