"""Entry point for `mitmdump -s addons/socialguard.py` (the secondary way to run socialguard).

    mitmdump -s addons/socialguard.py --set connection_strategy=lazy \
        --set socialguard_rules=rules/policy.yaml

Prefer `socialguard run`: it embeds the addon, so it cannot be unloaded. mitmproxy reloads `-s`
scripts when they change and, if a reload fails, runs on without the addon — unfiltered.
"""

import sys
from pathlib import Path

# mitmproxy puts this file's directory first on sys.path, where `socialguard` would be this very
# file; the installed package is the one meant.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if getattr(sys.modules.get("socialguard"), "__file__", None) == str(_HERE / "socialguard.py"):
    del sys.modules["socialguard"]

from socialguard.fsmode import restrict_umask  # noqa: E402 - after the sys.path fix above
from socialguard.proxy import SocialGuard  # noqa: E402 - after the sys.path fix above

restrict_umask()  # the store, keys and log it creates are not for other accounts
addons = [SocialGuard()]
