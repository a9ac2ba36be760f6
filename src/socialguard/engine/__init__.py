"""The decision engine: pure functions from (policy, request, principal, time, overrides) to a
Decision.

No I/O, no clock, no mitmproxy: everything is an argument, so the proxy, `socialguard check` and the
policy's own tests share one code path. See docs/internals.md for the contract.
"""

from .compiled import CompiledPolicy, CompiledRule, is_doh_request
from .decide import (
    decide,
    decide_connection,
    decide_connection_names,
    decide_network,
    decide_stream,
    decided_by_host,
    stricter,
)
from .domains import DomainIndex
from .hosts import domain_suffixes, is_ip_literal, normalise_host
from .model import (
    Action,
    Basis,
    Bypass,
    ConnectionDecision,
    ConnectionVerdict,
    Decision,
    Emergency,
    Grant,
    Principal,
    Request,
    TraceStep,
)
from .overrides import Overrides, site_matches
from .principal import normalise_client_ip, resolve_principal
from .schedule import Schedule

__all__ = [
    "Action",
    "Basis",
    "Bypass",
    "CompiledPolicy",
    "CompiledRule",
    "ConnectionDecision",
    "ConnectionVerdict",
    "Decision",
    "DomainIndex",
    "Emergency",
    "Grant",
    "Overrides",
    "Principal",
    "Request",
    "Schedule",
    "TraceStep",
    "decide",
    "decide_connection",
    "decide_connection_names",
    "decide_network",
    "decide_stream",
    "decided_by_host",
    "domain_suffixes",
    "is_doh_request",
    "is_ip_literal",
    "normalise_client_ip",
    "normalise_host",
    "resolve_principal",
    "site_matches",
    "stricter",
]
