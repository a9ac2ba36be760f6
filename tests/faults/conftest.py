"""Fixtures for the fault suite: the proxy tests' harness (real mitmproxy + addon, loopback
upstreams, ManualClock), loaded under its own module name as tests/uploads_e2e does.

Every fault test asserts what users rely on: traffic decided per the last good policy, nothing
forwarded undecided (the steering addon lists every upstream connection), nothing recorded lost.
"""

from __future__ import annotations

from proxy_harness import load_proxy_harness  # tests/proxy_harness.py

harness = load_proxy_harness()
# Everything the harness defines, under this module too: tests/proxy's modules `from conftest import
# ...`, and in a run that collects this directory first, `conftest` is this module.
globals().update({k: v for k, v in vars(harness).items() if not k.startswith("__")})
