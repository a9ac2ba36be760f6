"""Helpers for the decision log tests: decisions to log, a clock the test moves, reading lines."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from socialguard.audit import decision_event, new_decision_id
from socialguard.engine.model import Action, Basis, Decision, Principal

DENVER = ZoneInfo("America/Denver")


class Clock:
    """A clock the test advances by hand (passed in, never patched globally)."""

    def __init__(self, start: datetime) -> None:
        self.t = start.timestamp()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, when: datetime) -> None:
        self.t = when.timestamp()


def make_decision(
    host: str = "www.facebook.com",
    *,
    action: Action = Action.BLOCK,
    basis: Basis = Basis.RULE,
    user: str | None = "jdoe",
    device: str | None = None,
    groups: frozenset[str] = frozenset({"staff"}),
    client_ip: str = "10.0.0.5",
    category: str | None = "social",
    rule_id: str | None = "staff-social-school-hours",
    override_id: str | None = None,
) -> Decision:
    return Decision(
        action=action,
        basis=basis,
        reason="Board policy: staff shall not use social networking during school hours",
        principal=Principal(client_ip, groups, user=user, device=device),
        policy_version="pv-test-1",
        host=host,
        rule_id=rule_id,
        category=category,
        override_id=override_id,
    )


def event(host: str = "www.facebook.com", **kw: Any) -> dict[str, Any]:
    d = make_decision(host, **kw)
    return decision_event(
        d,
        decision_id=new_decision_id(),
        stage="request",
        client=d.principal.client_ip,
        scheme="https",
        method="GET",
    )


def lines_of(path: Path) -> list[bytes]:
    import gzip

    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return data.splitlines(keepends=True)
