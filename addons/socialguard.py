"""Entry point for `mitmdump -s addons/socialguard.py` (the secondary way to run socialguard).

    mitmdump -s addons/socialguard.py --set connection_strategy=lazy \
        --set socialguard_rules=rules/policy.yaml

Prefer `socialguard run`: it embeds the addon, so it cannot be unloaded. mitmproxy reloads `-s`
scripts when they change and, if a reload fails, runs on without the addon — unfiltered.
"""

from socialguard.proxy import SocialGuard

addons = [SocialGuard()]
