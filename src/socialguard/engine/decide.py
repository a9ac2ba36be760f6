"""The decision: what happens to this request (or connection), and why, as a pure function.

Order (ARCHITECTURE.md): rules in file order, first match wins; when the matching rule blocks and
allows it, an emergency in force for the principal lifts it, else a grant does; no matching rule →
the policy's default (with the `ip_literals:` handling for IP-address hosts no rule names). Nothing
here does I/O or reads the clock: the proxy, `socialguard check` and the policy's own tests call
the same function with the time passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import signin
from .accounts import account_headers
from .compiled import CompiledPolicy, CompiledRule, Destination
from .hosts import is_ip_literal
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
    slot_setter,
)
from .overrides import Overrides
from .paths import AmbiguousPath, request_target

__all__ = [
    "decide",
    "decide_connection",
    "decide_connection_names",
    "decide_network",
    "decide_stream",
    "decided_by_host",
    "stricter",
]

_NO_BYPASS: frozenset[Bypass] = frozenset()
_DEFAULT_ALLOW = TraceStep("default", "allow: no rule matched")
_DEFAULT_BLOCK = TraceStep("default", "block: no rule matched")
_NO_EMERGENCY = TraceStep("emergency", "none in force")
_NO_GRANT = TraceStep("grant", "none in force")
_IP_BLOCK = TraceStep("ip_literals", "block: no rule names this address")
_IP_ALLOW = TraceStep("ip_literals", "allow: no rule names this address")
_DECISION_CACHE_MAX = 20_000
_IP_BLOCK_REASON = (
    "Sites reached by bare IP address are blocked: they would bypass the district's rules."
)
_IP_ALLOW_REASON = "Sites reached by bare IP address are allowed by the district's policy."
_DEFAULT_ALLOW_REASON = "No rule concerns this request; the district's policy allows it."
_DEFAULT_BLOCK_REASON = (
    "No rule allows this request; the district's policy blocks what it does not allow."
)


def decide(
    policy: CompiledPolicy,
    request: Request,
    principal: Principal,
    now: datetime,
    overrides: Overrides = Overrides.EMPTY,
) -> Decision:
    """Decide one request. `request.host` must already be normalised; `now` must be timezone-aware.

    Only the rules that could match this host are walked (RuleIndex), so the trace lists those;
    a host no rule names goes straight to the default.
    """
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware time; a naive one would be read as local")
    tags, steps, seen = policy.host_rules(request.host)
    path = None  # the normalised path, where a `urls:` rule names the host (engine/paths.py)
    if steps and request.host in policy.rule_index.by_url_host:
        try:
            path = request_target(request.path or "/")
        except AmbiguousPath as e:
            return _ambiguous_path_decision(policy, request, principal, str(e))
    trace: list[TraceStep] = []
    for rule, by_tags in steps:
        if not rule.everyone and not rule.concerns(principal):
            trace.append(rule.no_who)
            continue
        # no tag of the host names the rule's destination: it may still name this page
        dest = by_tags if by_tags is not None else rule.url_destination(request, path)
        if dest is None:
            trace.append(rule.no_what)
            continue
        if rule.checks_request and not rule.request_matches(request):
            trace.append(rule.no_request)
            continue
        if rule.when is not None and not rule.when.holds(now):
            trace.append(rule.not_when)
            continue
        trace.append(rule.matched)
        if overrides is not Overrides.EMPTY and (rule.lifts_by_emergency or rule.lifts_by_grant):
            return _rule_decision(
                policy, rule, dest, request, principal, now, overrides, tags, trace, seen
            )
        return _plain_rule_decision(policy, rule, dest, request.host, principal, trace, seen)
    return _default_decision(policy, request, principal, trace, seen)


def _ambiguous_path_decision(
    policy: CompiledPolicy, request: Request, principal: Principal, why: str
) -> Decision:
    """A block: on a host with approved or blocked pages, the path must have one reading."""
    return Decision(
        Action.BLOCK,
        Basis.AMBIGUOUS,
        f"This address can be read as more than one page ({why}); on a site where the district "
        "approves or blocks single pages, only addresses every server reads the same way pass.",
        principal,
        policy.version,
        request.host,
        trace=(TraceStep("path", f"block: {why}"),),
    )


def decided_by_host(policy: CompiledPolicy, host: str) -> bool:
    """True when no rule of the policy could match `host` (normalised).

    decide() then answers from the policy's default, or its `ip_literals:` handling, alone: for
    one principal the answer is the same whatever the request's path, method, body or content
    type, whatever the time (only a rule has a `when`), and whatever the overrides (a grant or an
    emergency lifts a matching rule's block, and there is none). A caller asked about the same
    host again and again, as a proxy is on a keep-alive connection, may keep that answer.
    """
    return not policy.host_rules(host)[1]


def _remembered(
    policy: CompiledPolicy, principal: Principal, host: str, trace: list[TraceStep]
) -> tuple[tuple[object, ...], Decision | None]:
    """A Decision made before for the same principal, host and path through the rules.

    Without grants or emergencies in play, the decision is a function of (policy, principal, host,
    the outcome of each rule considered); the trace steps are built once per rule, so their ids
    name that path. Building a Decision is the dearest part of decide(), and a proxy asks the same
    question for every request of a page. The cache holds the principal, so its id cannot be
    reused while the entry lives; the identity check is a second guard.
    """
    key = (id(principal), host, *map(id, trace))
    hit = policy.decisions.get(key)
    if hit is not None and hit.principal is principal:
        return key, hit
    return key, None


def _remember(policy: CompiledPolicy, key: tuple[object, ...], decision: Decision) -> Decision:
    cache = policy.decisions
    if len(cache) >= _DECISION_CACHE_MAX:
        cache.clear()
    cache[key] = decision
    return decision


def _plain_rule_decision(  # noqa: PLR0917 - one hot-path call site
    policy: CompiledPolicy,
    rule: CompiledRule,
    dest: Destination,
    host: str,
    principal: Principal,
    trace: list[TraceStep],
    seen: bool,
) -> Decision:
    """The decision of a rule that matched and was not lifted; remembered once the host recurs.

    A host met for the first time (`seen` false) has nothing remembered, and most new hosts are
    never asked about again (a fresh subdomain per page), so the decision cache is neither
    probed nor filled for it: the second request to the host fills it.
    """
    key: tuple[object, ...] = ()
    if seen:
        key, hit = _remembered(policy, principal, host, trace)
        if hit is not None:
            return hit
    category, matched = dest
    decision = _make(
        rule.action,
        Basis.RULE,
        rule.reason,
        principal,
        policy.version,
        host,
        rule.id,
        category,
        matched,
        None,
        rule.bypass,
        tuple(trace),
        policy.service_of(host),
    )
    return _remember(policy, key, decision) if seen else decision


# The fields _make fills, in order. Should model.Decision gain a field, _make falls back to the
# ordinary constructor (new fields must have defaults) rather than leave a slot unset.
_FIELDS = (
    "action",
    "basis",
    "reason",
    "principal",
    "policy_version",
    "host",
    "rule_id",
    "category",
    "matched_domain",
    "override_id",
    "bypass",
    "trace",
    "service",
)
if Decision.__slots__ == _FIELDS:
    (
        _set_action,
        _set_basis,
        _set_reason,
        _set_principal,
        _set_version,
        _set_host,
        _set_rule,
        _set_category,
        _set_matched,
        _set_override,
        _set_bypass,
        _set_trace,
        _set_service,
    ) = (slot_setter(Decision, name) for name in _FIELDS)
    _new = object.__new__

    def _make(  # noqa: PLR0917 - mirrors Decision's positional fields, in order
        action: Action,
        basis: Basis,
        reason: str,
        principal: Principal,
        policy_version: str,
        host: str,
        rule_id: str | None,
        category: str | None,
        matched_domain: str | None,
        override_id: str | None,
        bypass: frozenset[Bypass],
        trace: tuple[TraceStep, ...],
        service: str | None,
    ) -> Decision:
        """Decision(...), about twice as fast.

        On the hot path the frozen dataclass __init__ (one object.__setattr__ per field) costs
        more than the decision itself. This fills the slots through their descriptors, as the
        frozen __init__ does; the result is an ordinary, equal Decision.
        """
        d = _new(Decision)
        _set_action(d, action)
        _set_basis(d, basis)
        _set_reason(d, reason)
        _set_principal(d, principal)
        _set_version(d, policy_version)
        _set_host(d, host)
        _set_rule(d, rule_id)
        _set_category(d, category)
        _set_matched(d, matched_domain)
        _set_override(d, override_id)
        _set_bypass(d, bypass)
        _set_trace(d, trace)
        _set_service(d, service)
        return d

else:  # pragma: no cover - only if model.Decision changed

    def _make(*values: Any) -> Decision:  # type: ignore[misc]
        return Decision(*values)


def _rule_decision(  # noqa: PLR0917 - one hot-path call site; keywords would cost time
    policy: CompiledPolicy,
    rule: CompiledRule,
    dest: Destination,
    request: Request,
    principal: Principal,
    now: datetime,
    overrides: Overrides,
    tags: Mapping[str, str],
    trace: list[TraceStep],
    seen: bool,
) -> Decision:
    lift = overrides.lifting(
        principal,
        request.host,
        tags,
        now,
        emergency=rule.lifts_by_emergency,
        grant=rule.lifts_by_grant,
        service_of=policy.service_of if policy.services else None,
    )
    if lift is not None and seen:
        # The same page asked again under the same grant or emergency: its decision, as made
        # before (building a lifted Decision and its trace costs several times a cached one).
        key: tuple[object, ...] = (
            id(policy),
            id(principal),
            request.host,
            id(lift),
            *map(id, trace),
        )
        hit = overrides.lifted.get(key)
        if hit is not None and hit[0] is policy and hit[1] is principal:
            return hit[2]
        decision = _lifted_decision(policy, rule, dest, request, principal, trace, lift)
        cache = overrides.lifted
        if len(cache) >= _DECISION_CACHE_MAX:
            cache.clear()
        cache[key] = (policy, principal, decision)
        return decision
    if lift is not None:
        return _lifted_decision(policy, rule, dest, request, principal, trace, lift)
    if rule.lifts_by_emergency:
        trace.append(_NO_EMERGENCY)
    if rule.lifts_by_grant:
        trace.append(_NO_GRANT)
    # nothing lifted it: the answer depends on the path alone again (its steps are constants)
    return _plain_rule_decision(policy, rule, dest, request.host, principal, trace, seen)


def _lifted_decision(  # noqa: PLR0917 - one call site, two calls
    policy: CompiledPolicy,
    rule: CompiledRule,
    dest: Destination,
    request: Request,
    principal: Principal,
    trace: list[TraceStep],
    lift: Emergency | Grant,
) -> Decision:
    """The allow of a rule that `lift` lifted, with the trace of what was considered (the
    emergency looked for first: `lifting` returns a grant only when none is in force)."""
    if isinstance(lift, Emergency):
        trace.append(TraceStep("emergency", f"in force: {lift.id} ({lift.scope})"))
        why = f"Allowed in an emergency ({lift.reason})"
        basis = Basis.EMERGENCY
    else:
        if rule.lifts_by_emergency:
            trace.append(_NO_EMERGENCY)
        trace.append(TraceStep("grant", f"in force: {lift.id} (until {lift.ends:%Y-%m-%d %H:%M}Z)"))
        why = f"Allowed at the request of administration ({lift.reason})"
        basis = Basis.GRANT
    return _lifted(policy, rule, dest, request.host, principal, trace, basis, why, lift.id)


def _lifted(  # noqa: PLR0917 - the pieces of the decision, from one call site each
    policy: CompiledPolicy,
    rule: CompiledRule,
    dest: Destination,
    host: str,
    principal: Principal,
    trace: list[TraceStep],
    basis: Basis,
    why: str,
    override_id: str,
) -> Decision:
    """The allow of a rule that an emergency or a grant lifted; the rule's reason is kept."""
    category, matched = dest
    return _make(
        Action.ALLOW,
        basis,
        f"{why}; otherwise: {rule.reason}",
        principal,
        policy.version,
        host,
        rule.id,
        category,
        matched,
        override_id,
        rule.bypass,
        tuple(trace),
        policy.service_of(host),
    )


def _default_decision(
    policy: CompiledPolicy,
    request: Request,
    principal: Principal,
    trace: list[TraceStep],
    seen: bool,
) -> Decision:
    """No rule matched: the policy's default (or its `ip_literals:` handling); remembered like
    _plain_rule_decision's, once the host recurs."""
    if policy.ip_literals != "inspect" and is_ip_literal(request.host):
        if policy.ip_literals == "block":
            action, step, reason = Action.BLOCK, _IP_BLOCK, _IP_BLOCK_REASON
        else:
            action, step, reason = Action.ALLOW, _IP_ALLOW, _IP_ALLOW_REASON
    elif policy.default is Action.ALLOW:
        action, step, reason = Action.ALLOW, _DEFAULT_ALLOW, _DEFAULT_ALLOW_REASON
    else:
        action, step, reason = Action.BLOCK, _DEFAULT_BLOCK, _DEFAULT_BLOCK_REASON
    trace.append(step)
    key: tuple[object, ...] = ()
    if seen:
        key, hit = _remembered(policy, principal, request.host, trace)
        if hit is not None:
            return hit
    decision = _make(
        action,
        Basis.DEFAULT,
        reason,
        principal,
        policy.version,
        request.host,
        None,
        None,
        None,
        None,
        _NO_BYPASS,
        tuple(trace),
        policy.service_of(request.host),
    )
    return _remember(policy, key, decision) if seen else decision


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
    `sni` must already be normalised (or None); `dest_ip` is the address the connection goes to
    (transparent mode's original destination, an explicit proxy's CONNECT to an address): a rule
    naming its network decides it too, and the stricter answer, with its own decision, wins.
    """
    if sni and policy.identity.portal is not None and signin.is_portal(policy, sni):
        # the sign-in page: answered by the proxy, whatever the rules say of the name
        return ConnectionDecision(
            ConnectionVerdict.INSPECT, signin.portal_decision(policy, principal, sni)
        )
    if ech or not sni:
        host = sni or dest_ip or ""
        why = "encrypted client hello: the real destination is hidden" if ech else "no SNI"
        decision = _connection_note(
            policy, host, principal, f"{why}; each request is decided on its Host"
        )
        named = ConnectionDecision(ConnectionVerdict.INSPECT, decision)
    else:
        request = Request(host=sni, sni=sni)
        decision = decide(policy, request, principal, now, overrides)
        tags = policy.host_rules(sni)[0]  # classify(sni), from the cache decide() just filled
        verdict = _connection_verdict(policy, sni, principal, tags, decision)
        if verdict is ConnectionVerdict.PASS and account_headers(policy.accounts, sni):
            # `accounts:` restricts sign-in by headers added to the requests: they must be seen.
            verdict = ConnectionVerdict.INSPECT
        if (
            verdict is not ConnectionVerdict.INSPECT
            and policy.identity.portal is not None
            and signin.must_sign_in(policy, principal)
            and signin.sign_in_concerns(policy, (sni,))
        ):
            # its requests are sent to the sign-in page: they must be seen to be answered
            verdict = ConnectionVerdict.INSPECT
        named = ConnectionDecision(verdict, decision)
    network = _network_decision(policy, dest_ip, principal, now, overrides)
    return stricter(named, network) if network is not None else named


def _network_decision(
    policy: CompiledPolicy,
    dest_ip: str | None,
    principal: Principal,
    now: datetime,
    overrides: Overrides,
) -> ConnectionDecision | None:
    """The connection verdict of the rules naming the destination address's network, if any do.

    Only a rule counts here, not the `ip_literals:` handling: every transparent connection goes
    to an address, and that alone says nothing of where it is going.
    """
    if dest_ip is None or not policy.ip_index.entries or not policy.ip_index.lookup(dest_ip):
        return None
    decision = decide(policy, Request(host=dest_ip), principal, now, overrides)
    if decision.basis is Basis.DEFAULT:
        return None  # no rule for this principal names the network
    tags = policy.host_rules(dest_ip)[0]
    verdict = _connection_verdict(policy, dest_ip, principal, tags, decision, literal=False)
    return ConnectionDecision(verdict, decision)


def decide_network(
    policy: CompiledPolicy,
    request: Request,
    principal: Principal,
    now: datetime,
    overrides: Overrides = Overrides.EMPTY,
) -> Decision | None:
    """The decision of the rules naming the network of `request.host` (a normalised address),
    or None when no rule for this principal names it.

    For transparent mode's original destination, decided beside the names the request carries:
    the address alone says nothing (every transparent request goes to one), a rule naming its
    network does.
    """
    if not policy.ip_index.entries or not policy.ip_index.lookup(request.host):
        return None
    decision = decide(policy, request, principal, now, overrides)
    return None if decision.basis is Basis.DEFAULT else decision


def decide_connection_names(
    policy: CompiledPolicy,
    sni: str | None,
    principal: Principal,
    now: datetime,
    overrides: Overrides = Overrides.EMPTY,
    *,
    also: tuple[str, ...] = (),
    dest_ip: str | None = None,
    ech: bool = False,
) -> ConnectionDecision:
    """decide_connection() for every name a connection was given: its SNI, then `also` (an
    explicit proxy's CONNECT target); the strictest verdict wins. A connection carrying two names
    is never passed through: its requests may be addressed to either, so each is decided."""
    out = decide_connection(policy, sni, principal, now, overrides, dest_ip=dest_ip, ech=ech)
    others = [name for name in dict.fromkeys(also) if name != sni]
    for name in others:
        other = decide_connection(policy, name, principal, now, overrides, dest_ip=dest_ip, ech=ech)
        out = stricter(out, other)
    if others and out.verdict is ConnectionVerdict.PASS:
        return ConnectionDecision(ConnectionVerdict.INSPECT, out.decision)
    return out


def decide_stream(
    policy: CompiledPolicy,
    names: tuple[str, ...],
    principal: Principal,
    now: datetime,
    overrides: Overrides = Overrides.EMPTY,
    *,
    dest_ip: str | None = None,
) -> ConnectionDecision:
    """Decide an opaque stream (neither TLS nor HTTP): PASS (relayed) or BLOCK (refused).

    Nothing inside it can be decided, so it is relayed only where its connection would be passed
    through; where the policy would inspect (or block) it, it is refused, and the decision says
    block, because that is what happens. An address among `names` is decided as one (its
    networks, then `ip_literals:`).
    """
    first = names[0] if names else None
    cd = decide_connection_names(
        policy, first, principal, now, overrides, also=names[1:], dest_ip=dest_ip
    )
    if cd.verdict is ConnectionVerdict.PASS:
        return cd
    decision = cd.decision
    if decision.action is not Action.BLOCK:
        decision = dataclasses.replace(
            decision,
            action=Action.BLOCK,
            reason=_UNINSPECTABLE_REASON,
            trace=(*decision.trace, _UNINSPECTABLE),
        )
    return ConnectionDecision(ConnectionVerdict.BLOCK, decision)


def stricter(a: ConnectionDecision, b: ConnectionDecision) -> ConnectionDecision:
    """The stricter of two connection decisions (BLOCK > INSPECT > PASS); `a` among equals."""
    return b if _STRICTNESS[b.verdict] > _STRICTNESS[a.verdict] else a


_STRICTNESS = {ConnectionVerdict.PASS: 0, ConnectionVerdict.INSPECT: 1, ConnectionVerdict.BLOCK: 2}
_UNINSPECTABLE = TraceStep("stream", "block: neither TLS nor HTTP, so nothing in it can be decided")
_UNINSPECTABLE_REASON = (
    "This connection is neither web traffic nor TLS, so the district's rules cannot be applied "
    "inside it, and its destination is one they concern: it is refused."
)


def _connection_verdict(
    policy: CompiledPolicy,
    host: str,
    principal: Principal,
    tags: Mapping[str, str],
    decision: Decision,
    *,
    literal: bool = True,
) -> ConnectionVerdict:
    for rule in policy.rule_index.candidates(host, tags):
        if not rule.concerns(principal) or not rule.may_concern_host(host, tags):
            continue
        if rule.when is not None or rule.request_dependent:
            return ConnectionVerdict.INSPECT
        if rule.action is Action.ALLOW:
            return ConnectionVerdict.PASS
        if rule.bypass or policy.blocked_connections == "inspect":
            return ConnectionVerdict.INSPECT
        return ConnectionVerdict.BLOCK
    if literal and is_ip_literal(host) and policy.ip_literals != "allow":
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
        service=policy.service_of(host) if host else None,
    )
