"""The decision: what happens to this request (or connection), and why, as a pure function.

Order (ARCHITECTURE.md): rules in file order, first match wins; when the matching rule blocks and
allows it, an emergency in force for the principal lifts it, else a grant does; no matching rule →
the policy's default (with the `ip_literals:` handling for IP-address hosts no rule names). Nothing
here does I/O or reads the clock: the proxy, `socialguard check` and the policy's own tests call
the same function with the time passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .compiled import CompiledPolicy, CompiledRule
from .hosts import is_ip_literal
from .model import (
    Action,
    Basis,
    Bypass,
    ConnectionDecision,
    ConnectionVerdict,
    Decision,
    Principal,
    Request,
    TraceStep,
)
from .overrides import Overrides

__all__ = ["decide", "decide_connection"]

_DEFAULT_STEP = "default"


def decide(
    policy: CompiledPolicy,
    request: Request,
    principal: Principal,
    now: datetime,
    overrides: Overrides = Overrides.EMPTY,
) -> Decision:
    """Decide one request. `request.host` must already be normalised; `now` must be timezone-aware."""
    tags = policy.classify(request.host)
    trace: list[TraceStep] = []
    local: datetime | None = None
    for rule in policy.rules:
        if not rule.concerns(principal):
            trace.append(rule.no_who)
            continue
        dest = rule.destination(request, tags)
        if dest is None:
            trace.append(rule.no_what)
            continue
        if not rule.request_matches(request):
            trace.append(rule.no_request)
            continue
        if rule.when is not None:
            if local is None:
                local = now.astimezone(policy.district.timezone)
            if not rule.when.holds(local):
                trace.append(rule.not_when)
                continue
        trace.append(rule.matched)
        return _rule_decision(policy, rule, dest, request, principal, now, overrides, tags, trace)
    return _default_decision(policy, request, principal, trace)


def _rule_decision(
    policy: CompiledPolicy,
    rule: CompiledRule,
    dest: tuple[str | None, str | None],
    request: Request,
    principal: Principal,
    now: datetime,
    overrides: Overrides,
    tags: Mapping[str, str],
    trace: list[TraceStep],
) -> Decision:
    category, matched = dest
    if rule.action is Action.BLOCK and rule.bypass and overrides:
        if Bypass.EMERGENCY in rule.bypass:
            emergency = overrides.emergency_for(principal, request.host, tags, now)
            if emergency is not None:
                trace.append(
                    TraceStep("emergency", f"in force: {emergency.id} ({emergency.scope})")
                )
                return Decision(
                    Action.ALLOW,
                    Basis.EMERGENCY,
                    f"Allowed in an emergency ({emergency.reason}); otherwise: {rule.reason}",
                    principal,
                    policy.version,
                    request.host,
                    rule.id,
                    category,
                    matched,
                    emergency.id,
                    rule.bypass,
                    tuple(trace),
                )
            trace.append(TraceStep("emergency", "none in force"))
        if Bypass.GRANT in rule.bypass:
            grant = overrides.grant_for(principal, request.host, tags, now)
            if grant is not None:
                trace.append(
                    TraceStep("grant", f"in force: {grant.id} (until {grant.ends:%Y-%m-%d %H:%M}Z)")
                )
                return Decision(
                    Action.ALLOW,
                    Basis.GRANT,
                    f"Allowed at the request of administration ({grant.reason}); otherwise: {rule.reason}",
                    principal,
                    policy.version,
                    request.host,
                    rule.id,
                    category,
                    matched,
                    grant.id,
                    rule.bypass,
                    tuple(trace),
                )
            trace.append(TraceStep("grant", "none in force"))
    return Decision(
        rule.action,
        Basis.RULE,
        rule.reason,
        principal,
        policy.version,
        request.host,
        rule.id,
        category,
        matched,
        None,
        rule.bypass,
        tuple(trace),
    )


def _default_decision(
    policy: CompiledPolicy, request: Request, principal: Principal, trace: list[TraceStep]
) -> Decision:
    if policy.ip_literals != "inspect" and is_ip_literal(request.host):
        action = Action.BLOCK if policy.ip_literals == "block" else Action.ALLOW
        trace.append(TraceStep("ip_literals", f"{action.value}: no rule names this address"))
        reason = (
            "Sites reached by bare IP address are blocked: they would bypass the district's rules."
            if action is Action.BLOCK
            else "Sites reached by bare IP address are allowed by the district's policy."
        )
        return Decision(
            action,
            Basis.DEFAULT,
            reason,
            principal,
            policy.version,
            request.host,
            trace=tuple(trace),
        )
    trace.append(TraceStep(_DEFAULT_STEP, policy.default.value))
    reason = (
        "No rule concerns this request; the district's policy allows it."
        if policy.default is Action.ALLOW
        else "No rule allows this request; the district's policy blocks what it does not allow."
    )
    return Decision(
        policy.default,
        Basis.DEFAULT,
        reason,
        principal,
        policy.version,
        request.host,
        trace=tuple(trace),
    )


def decide_connection(
    policy: CompiledPolicy,
    sni: str | None,
    principal: Principal,
    now: datetime,
    overrides: Overrides = Overrides.EMPTY,
    *,
    dest_ip: str | None = None,
    ech: bool = False,
) -> ConnectionDecision:
    """Decide a TLS connection on its ClientHello: PASS (no decryption), INSPECT, or BLOCK.

    PASS only when nothing could change the verdict while the connection stays open — connections
    live for hours, and one opened at 07:29 must not carry requests at 07:31. So a destination is
    passed through only when no rule concerns it for this principal, or the first rule that does is
    an unconditional allow (no schedule, no path/method/upload/DoH condition). Everything else is
    INSPECTed and decided per request. A destination whose first concerning rule blocks it always,
    with no bypass, is INSPECTed by default so that the person sees a block page saying why; with
    `blocked_connections: reset` it is refused at the TLS layer instead (BLOCK). No SNI, an
    Encrypted Client Hello, or an IP-address destination never PASS (unless `ip_literals: allow`).
    `sni` must already be normalised (or None); `dest_ip` is the original destination, if known.
    """
    if ech or not sni:
        host = sni or dest_ip or ""
        why = "encrypted client hello: the real destination is hidden" if ech else "no SNI"
        decision = _connection_note(
            policy, host, principal, f"{why}; each request is decided on its Host"
        )
        return ConnectionDecision(ConnectionVerdict.INSPECT, decision)
    request = Request(host=sni, sni=sni)
    decision = decide(policy, request, principal, now, overrides)
    tags = policy.classify(sni)
    if dest_ip is not None and policy.ip_index.entries:
        ip_tags = policy.ip_index.lookup(dest_ip)
        if ip_tags:
            tags = {**ip_tags, **tags}
    verdict = _connection_verdict(policy, sni, principal, tags, decision)
    return ConnectionDecision(verdict, decision)


def _connection_verdict(
    policy: CompiledPolicy,
    host: str,
    principal: Principal,
    tags: Mapping[str, str],
    decision: Decision,
) -> ConnectionVerdict:
    for rule in policy.rules:
        if not rule.concerns(principal) or not rule.may_concern_host(host, tags):
            continue
        if rule.when is not None or rule.request_dependent:
            return ConnectionVerdict.INSPECT
        if rule.action is Action.ALLOW:
            return ConnectionVerdict.PASS
        if rule.bypass or policy.blocked_connections == "inspect":
            return ConnectionVerdict.INSPECT
        return ConnectionVerdict.BLOCK
    if is_ip_literal(host) and policy.ip_literals != "allow":
        if policy.ip_literals == "block" and policy.blocked_connections == "reset":
            return ConnectionVerdict.BLOCK
        return ConnectionVerdict.INSPECT
    if policy.default is Action.ALLOW:
        return ConnectionVerdict.PASS
    return (
        ConnectionVerdict.INSPECT
        if policy.blocked_connections == "inspect"
        else ConnectionVerdict.BLOCK
    )


def _connection_note(
    policy: CompiledPolicy, host: str, principal: Principal, note: str
) -> Decision:
    """The record for a connection decided per request: provisional allow, with the reason why."""
    return Decision(
        Action.ALLOW,
        Basis.DEFAULT,
        f"Connection inspected: {note}.",
        principal,
        policy.version,
        host,
        trace=(TraceStep("connection", note),),
    )
