"""socialguard.deploy: what it takes to put the proxy on a district network.

- `ca`: the interception CA (create in mitmproxy's layout, describe, export for devices);
- `nftables`, `dnsmasq`: the router's ruleset (full or steered mode) and the resolver's lines;
- `metrics`, `health`: Prometheus figures and the loopback admin endpoint (/healthz, /metrics);
- `workers`: the `run --workers N` supervisor.

Modules are imported where they are used (not re-exported here) so that importing one — the proxy
imports `ca` at start-up — does not pull in the others' dependencies.
"""
