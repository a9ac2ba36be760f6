"""decide() and decide_connection(): rules in order, bypass by grants and emergencies, defaults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from socialguard.engine import (
    Action,
    Basis,
    CompiledPolicy,
    ConnectionVerdict,
    Decision,
    Emergency,
    Grant,
    Overrides,
    Request,
    decide,
    decide_connection,
    resolve_principal,
)

DENVER = ZoneInfo("America/Denver")
SCHOOL_TIME = datetime(2026, 12, 1, 10, 0, tzinfo=DENVER)
EVENING = datetime(2026, 12, 1, 18, 0, tzinfo=DENVER)
MakePolicy = Callable[..., CompiledPolicy]

RULES = """
rules:
  - id: approved-pages
    description: District page
    who: [all-staff]
    what:
      urls: ["https://www.facebook.com/District"]
    action: allow
  - id: staff-social
    description: No social networking in school hours
    who: [staff]
    what:
      categories: [social]
    when: school-hours
    action: block
    bypass: [grant, emergency]
default: allow
"""


@pytest.fixture
def policy(make_policy: MakePolicy) -> CompiledPolicy:
    return make_policy(RULES)


def ask(
    policy: CompiledPolicy,
    url_host: str,
    client: str = "10.20.1.5",
    when: datetime = SCHOOL_TIME,
    overrides: Overrides = Overrides.EMPTY,
    **request: object,
) -> Decision:
    principal = resolve_principal(policy, client)
    return decide(policy, Request(host=url_host, **request), principal, when, overrides)  # type: ignore[arg-type]


def test_staff_social_in_school_hours_is_blocked_with_its_explanation(
    policy: CompiledPolicy,
) -> None:
    d = ask(policy, "m.facebook.com")
    assert (d.action, d.basis, d.rule_id) == (Action.BLOCK, Basis.RULE, "staff-social")
    assert (d.category, d.matched_domain) == ("social", "facebook.com")
    assert d.reason == "No social networking in school hours"
    assert d.policy_version == policy.version
    assert [s.step for s in d.trace][-1] == "rule:staff-social"


def test_outside_school_hours_the_default_applies(policy: CompiledPolicy) -> None:
    d = ask(policy, "facebook.com", when=EVENING)
    assert (d.action, d.basis, d.rule_id) == (Action.ALLOW, Basis.DEFAULT, None)
    assert any("skipped" in s.outcome for s in d.trace)


def test_a_look_alike_host_is_not_social(policy: CompiledPolicy) -> None:
    assert ask(policy, "notfacebook.com").action is Action.ALLOW


def test_the_approved_page_comes_first(policy: CompiledPolicy) -> None:
    d = ask(policy, "www.facebook.com", path="/District/photos")
    assert (d.action, d.rule_id) == (Action.ALLOW, "approved-pages")
    assert ask(policy, "www.facebook.com", path="/DistrictEvil").action is Action.BLOCK
    assert ask(policy, "www.facebook.com", path="/District?ref=1").action is Action.ALLOW
    assert ask(policy, "www.facebook.com", path="/District", scheme="http").action is Action.BLOCK


def test_other_groups_are_not_concerned(policy: CompiledPolicy) -> None:
    assert ask(policy, "facebook.com", client="10.10.5.7").action is Action.ALLOW
    assert ask(policy, "facebook.com", client="192.0.2.1").action is Action.ALLOW


def test_ipv6_staff_address_is_staff(policy: CompiledPolicy) -> None:
    assert ask(policy, "facebook.com", client="2001:db8:20::9").action is Action.BLOCK


def test_an_ip_literal_in_a_category_network_is_classified(policy: CompiledPolicy) -> None:
    d = ask(policy, "157.240.1.35")
    assert (d.action, d.category, d.matched_domain) == (Action.BLOCK, "social", "157.240.0.0/16")


def _grant(who: str, sites: tuple[str, ...], start: datetime, minutes: int = 60) -> Grant:
    return Grant("g1", who, sites, start, start + timedelta(minutes=minutes), "lesson", "admin")


def test_a_grant_lifts_the_block_for_its_holder_and_site_only(policy: CompiledPolicy) -> None:
    start = SCHOOL_TIME.astimezone(UTC) - timedelta(minutes=5)
    overrides = Overrides.build([_grant("ip:10.20.1.5", ("facebook.com",), start)], [])
    d = ask(policy, "www.facebook.com", overrides=overrides)
    assert (d.action, d.basis, d.override_id, d.rule_id) == (
        Action.ALLOW,
        Basis.GRANT,
        "g1",
        "staff-social",
    )
    assert (
        ask(policy, "www.facebook.com", client="10.20.1.6", overrides=overrides).action
        is Action.BLOCK
    )
    assert ask(policy, "instagram.com", overrides=overrides).action is Action.BLOCK


def test_a_grant_ends_to_the_second(policy: CompiledPolicy) -> None:
    start = SCHOOL_TIME.astimezone(UTC) - timedelta(minutes=60)
    overrides = Overrides.build(
        [_grant("group:staff", ("category:social",), start, minutes=60)], []
    )
    assert (
        ask(
            policy, "facebook.com", overrides=overrides, when=SCHOOL_TIME - timedelta(seconds=1)
        ).basis
        is Basis.GRANT
    )
    assert ask(policy, "facebook.com", overrides=overrides).action is Action.BLOCK  # end exclusive


def test_an_emergency_lifts_the_block_within_its_scope(policy: CompiledPolicy) -> None:
    start = SCHOOL_TIME - timedelta(minutes=1)
    emergency = Emergency("e1", "all", start, None, "lockdown", "superintendent")
    d = ask(policy, "facebook.com", overrides=Overrides.build([], [emergency]))
    assert (d.action, d.basis, d.override_id) == (Action.ALLOW, Basis.EMERGENCY, "e1")
    scoped = Emergency("e2", "group:admins", start, None, "x", "y")
    assert (
        ask(policy, "facebook.com", overrides=Overrides.build([], [scoped])).action is Action.BLOCK
    )


def test_a_self_declared_emergency_covers_only_its_site(policy: CompiledPolicy) -> None:
    start = SCHOOL_TIME - timedelta(minutes=1)
    mine = Emergency(
        "e3",
        "ip:10.20.1.5",
        start,
        start + timedelta(minutes=30),
        "family",
        "me",
        ("facebook.com",),
        True,
    )
    overrides = Overrides.build([], [mine])
    assert ask(policy, "facebook.com", overrides=overrides).basis is Basis.EMERGENCY
    assert ask(policy, "instagram.com", overrides=overrides).action is Action.BLOCK


def test_overrides_cannot_lift_a_rule_without_bypass(make_policy: MakePolicy) -> None:
    policy = make_policy(RULES.replace("bypass: [grant, emergency]", "bypass: none"))
    start = SCHOOL_TIME - timedelta(minutes=1)
    overrides = Overrides.build(
        [_grant("ip:10.20.1.5", ("facebook.com",), start)],
        [Emergency("e", "all", start, None, "r", "b")],
    )
    assert ask(policy, "facebook.com", overrides=overrides).action is Action.BLOCK


def test_default_block_and_ip_literal_handling(make_policy: MakePolicy) -> None:
    policy = make_policy("default: block\nip_literals: block\n")
    d = ask(policy, "example.org")
    assert (d.action, d.basis) == (Action.BLOCK, Basis.DEFAULT)
    assert ask(policy, "192.0.2.7").action is Action.BLOCK
    allowing = make_policy("default: allow\nip_literals: block\n")
    assert ask(allowing, "192.0.2.7").action is Action.BLOCK
    assert ask(allowing, "example.org").action is Action.ALLOW


@pytest.mark.parametrize(
    ("request_fields", "blocked"),
    [
        ({"path": "/dns-query?dns=AAAB"}, True),
        ({"path": "/resolve", "content_type": "application/dns-message"}, True),
        ({"path": "/q?name=x&dns=q80BAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE"}, True),
        ({"path": "/q", "accept": "application/dns-message"}, True),
        ({"path": "/q?name=x&dns=abc"}, False),  # not a DNS message: no resolver answers it
        ({"path": "/index.html"}, False),
    ],
)
def test_doh_by_request_form(
    make_policy: MakePolicy, request_fields: dict[str, str], blocked: bool
) -> None:
    policy = make_policy(
        "rules:\n  - {id: no-doh, description: DoH hides destinations, what: {doh: true}, action: block}\n"  # noqa: E501
    )
    assert (ask(policy, "resolver.example", **request_fields).action is Action.BLOCK) is blocked


def test_method_and_upload_conditions(make_policy: MakePolicy) -> None:
    policy = make_policy(
        """
rules:
  - id: no-posting
    description: no uploads to social
    who: [all-staff]
    what: {categories: [social], methods: [POST, PUT], uploads: true}
    action: block
"""
    )
    assert (
        ask(policy, "facebook.com", method="POST", upload=True, when=EVENING).action is Action.BLOCK
    )
    assert ask(policy, "facebook.com", method="POST", upload=False).action is Action.ALLOW
    assert ask(policy, "facebook.com", method="GET", upload=True).action is Action.ALLOW


# -- connections -----------------------------------------------------------------------------------


def connect(
    policy: CompiledPolicy, sni: str | None, client: str = "10.20.1.5", **kw: object
) -> ConnectionVerdict:
    principal = resolve_principal(policy, client)
    return decide_connection(policy, sni, principal, SCHOOL_TIME, Overrides.EMPTY, **kw).verdict  # type: ignore[arg-type]


def test_a_host_no_rule_concerns_is_passed_through(policy: CompiledPolicy) -> None:
    assert connect(policy, "example.org") is ConnectionVerdict.PASS


def test_a_scheduled_destination_is_inspected_even_outside_the_schedule(
    policy: CompiledPolicy,
) -> None:
    principal = resolve_principal(policy, "10.20.1.5")
    out = decide_connection(policy, "facebook.com", principal, EVENING, Overrides.EMPTY)
    assert out.verdict is ConnectionVerdict.INSPECT
    assert out.decision.action is Action.ALLOW


def test_a_destination_with_a_url_rule_is_inspected_for_admins(policy: CompiledPolicy) -> None:
    assert connect(policy, "www.facebook.com", client="10.10.5.7") is ConnectionVerdict.INSPECT
    assert connect(policy, "instagram.com", client="10.10.5.7") is ConnectionVerdict.PASS


def test_no_sni_and_ech_are_never_passed(policy: CompiledPolicy) -> None:
    assert connect(policy, None, dest_ip="192.0.2.1") is ConnectionVerdict.INSPECT
    assert connect(policy, "example.org", ech=True) is ConnectionVerdict.INSPECT


def test_an_always_blocked_destination_is_inspected_or_reset_as_the_policy_says(
    make_policy: MakePolicy,
) -> None:
    rule = "rules:\n  - {id: never, description: never, what: {domains: [bad.example]}, action: block}\n"  # noqa: E501
    assert connect(make_policy(rule), "x.bad.example") is ConnectionVerdict.INSPECT
    resetting = make_policy(rule + "blocked_connections: reset\n")
    assert connect(resetting, "x.bad.example") is ConnectionVerdict.BLOCK
    with_bypass = make_policy(
        rule.replace("action: block", "action: block, bypass: [grant]")
        + "blocked_connections: reset\n"
    )
    assert connect(with_bypass, "x.bad.example") is ConnectionVerdict.INSPECT


def test_an_unconditional_allow_first_is_passed(make_policy: MakePolicy) -> None:
    rule = (
        "rules:\n  - {id: ok, description: ok, what: {domains: [ok.example]}, action: allow}\n"
        "  - {id: no, description: no, what: {domains: [ok.example]}, when: school-hours, action: block}\n"  # noqa: E501
    )
    assert connect(make_policy(rule), "ok.example") is ConnectionVerdict.PASS


def test_ip_destinations_are_not_waved_through(
    make_policy: MakePolicy, policy: CompiledPolicy
) -> None:
    assert connect(policy, "192.0.2.8") is ConnectionVerdict.INSPECT
    assert connect(make_policy("ip_literals: allow\n"), "192.0.2.8") is ConnectionVerdict.PASS
    # a social network reached by SNI name at an address in the social networks' range
    assert connect(policy, "cdn.example", dest_ip="157.240.1.1") is ConnectionVerdict.INSPECT


def test_the_next_schedule_change_is_when_school_hours_end(policy: CompiledPolicy) -> None:
    change = policy.next_schedule_change(SCHOOL_TIME)
    assert change == datetime(2026, 12, 1, 16, 0, tzinfo=DENVER)
    assert ask(policy, "facebook.com", when=change - timedelta(seconds=1)).action is Action.BLOCK
    assert ask(policy, "facebook.com", when=change).action is Action.ALLOW


def test_a_negated_schedule_applies_outside_it(make_policy: MakePolicy) -> None:
    policy = make_policy(
        "rules:\n  - {id: evenings, description: e, who: [staff], what: {categories: [social]},"
        " when: {not: school-hours}, action: block}\n"
    )
    assert ask(policy, "facebook.com", when=EVENING).rule_id == "evenings"
    d = ask(policy, "facebook.com", when=SCHOOL_TIME)
    assert d.action is Action.ALLOW
    assert d.trace[0].outcome == "skipped: in school-hours"


def test_who_can_name_users_and_devices(make_policy: MakePolicy) -> None:
    policy = make_policy(
        "rules:\n  - {id: one, description: d, who: ['user:principal-jones', 'device:kiosk'],"
        " what: {domains: [example.org]}, action: block}\n"
    )
    principal = resolve_principal(policy, "192.0.2.1", user="principal-jones")
    assert decide(policy, Request(host="www.example.org"), principal, SCHOOL_TIME).rule_id == "one"
    assert ask(policy, "www.example.org", client="192.0.2.1").action is Action.ALLOW
    assert [str(w).split(": ", 1)[1] for w in policy.warnings] == [
        "rules[0].who[1]: device 'kiosk' is not in any inventory"
    ]


def test_a_remembered_decision_is_the_one_a_fresh_policy_makes(
    make_policy: MakePolicy, policy: CompiledPolicy
) -> None:
    fresh = make_policy(RULES)
    for host, when in [
        ("facebook.com", SCHOOL_TIME),
        ("facebook.com", EVENING),
        ("x.org", EVENING),
    ]:
        first = ask(policy, host, when=when)
        principal = first.principal
        again = decide(policy, Request(host=host), principal, when)
        assert again == first and again.trace == first.trace
        other = decide(fresh, Request(host=host), principal, when)
        assert (other.action, other.rule_id, other.trace) == (
            first.action,
            first.rule_id,
            first.trace,
        )


def test_remembered_decisions_carry_their_own_principal(policy: CompiledPolicy) -> None:
    a = ask(policy, "facebook.com", client="10.20.1.5")
    b = ask(policy, "facebook.com", client="10.20.1.6")
    assert (a.principal.client_ip, b.principal.client_ip) == ("10.20.1.5", "10.20.1.6")
    assert a.action is b.action is Action.BLOCK


def test_a_naive_time_is_refused_rather_than_guessed(policy: CompiledPolicy) -> None:
    principal = resolve_principal(policy, "10.20.1.5")
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(policy, Request(host="facebook.com"), principal, datetime(2026, 12, 1, 10, 0))


def test_an_irrelevant_snapshot_gives_the_rules_answer_with_the_overrides_considered(
    policy: CompiledPolicy,
) -> None:
    start = SCHOOL_TIME - timedelta(minutes=1)
    elsewhere = Overrides.build([_grant("ip:10.9.9.9", ("facebook.com",), start)], [])
    first = ask(policy, "facebook.com", overrides=elsewhere)
    again = ask(policy, "facebook.com", overrides=elsewhere)
    for d in (first, again):
        assert (d.action, d.basis) == (Action.BLOCK, Basis.RULE)
        assert [s.step for s in d.trace][-2:] == ["emergency", "grant"]
    mine = Overrides.build([_grant("ip:10.20.1.5", ("facebook.com",), start)], [])
    assert ask(policy, "facebook.com", overrides=mine).basis is Basis.GRANT


# -- decided by host alone ---------------------------------------------------------------------

DOH_FORM_RULE = """
  - id: no-doh
    description: DoH hides destinations
    what: {doh: true}
    action: block
"""


@pytest.mark.parametrize(
    ("host", "by_host"),
    [
        ("example.org", True),  # no rule names it: the default
        ("192.0.2.7", True),  # an address no rule names: ip_literals
        ("www.facebook.com", False),  # social, in school hours, liftable by a grant
        ("facebook.com", False),
        ("157.240.1.1", False),  # an address in the social category's network
    ],
)
@pytest.mark.parametrize("doh_rule", [False, True])
def test_a_host_decided_by_host_alone_gets_one_answer_whatever_else_changes(
    make_policy: MakePolicy, host: str, by_host: bool, doh_rule: bool
) -> None:
    """decided_by_host(host) promises that decide() depends on nothing but the host and who asks:
    here the path, method, content type, upload flag, time and overrides all vary around it."""
    from socialguard.engine import decided_by_host

    rules = RULES.replace("rules:\n", "rules:\n" + DOH_FORM_RULE) if doh_rule else RULES
    policy = make_policy(rules)
    # A rule for every host (DoH by its form) concerns every host.
    assert decided_by_host(policy, host) is (by_host and not doh_rule)
    if not decided_by_host(policy, host):
        return
    start = SCHOOL_TIME - timedelta(hours=1)
    lifting = [
        Overrides.EMPTY,
        Overrides.build([_grant("ip:10.20.1.5", (host, "category:social"), start)], []),
        Overrides.build([], [Emergency("e", "all", start, None, "drill", "admin")]),
    ]
    requests = [
        {},
        {"path": "/dns-query?dns=AAAB", "content_type": "application/dns-message"},
        {"path": "/District", "scheme": "https", "method": "POST", "upload": True},
        {"scheme": "http", "port": 8080, "method": "PUT"},
    ]
    answers = {
        (d.action, d.basis, d.reason, d.rule_id, d.trace)
        for when in (SCHOOL_TIME, EVENING, SCHOOL_TIME + timedelta(days=4))
        for overrides in lifting
        for fields in requests
        for d in [ask(policy, host, when=when, overrides=overrides, **fields)]
    }
    assert len(answers) == 1


def test_a_host_a_rule_concerns_may_get_different_answers(policy: CompiledPolicy) -> None:
    """The converse, so that the test above cannot pass by asking about nothing that varies."""
    from socialguard.engine import decided_by_host

    assert not decided_by_host(policy, "www.facebook.com")
    assert (
        ask(policy, "www.facebook.com").action
        is not ask(policy, "www.facebook.com", when=EVENING).action
    )
