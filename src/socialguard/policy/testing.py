"""The rules file's own tests: expected decisions, checked with the same decide() the proxy uses.

A district changing its rules needs to know it did not open a hole; `tests:` pins down what must
happen (`{url, client, at, expect}`), and `socialguard rules test` / `rules check` run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from socialguard.engine.compiled import CompiledPolicy, PolicyTest
from socialguard.engine.decide import decide
from socialguard.engine.hosts import normalise_host
from socialguard.engine.model import Decision, Request
from socialguard.engine.overrides import Overrides
from socialguard.engine.principal import resolve_principal

__all__ = ["PolicyTestResult", "request_from_url", "run_policy_tests"]


@dataclass(frozen=True, slots=True)
class PolicyTestResult:
    test: PolicyTest
    decision: Decision | None
    problems: tuple[str, ...]  # what differed from the expectation (empty when passed)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def expected(self) -> str:
        return self.test.expect.value

    def describe(self) -> str:
        """One paragraph: the test, what went wrong, and the decision's own explanation."""
        where = f"line {self.test.line}: " if self.test.line else ""
        head = f"{'PASS' if self.passed else 'FAIL'} {where}{self.test.name}"
        if self.passed or self.decision is None:
            return head + "".join(f"\n    {p}" for p in self.problems)
        d = self.decision
        lines = [head, *(f"    {p}" for p in self.problems)]
        lines.append(
            f"    decision: {d.action.value} (basis {d.basis.value}, rule {d.rule_id or '-'})"
        )
        lines.append(f"    reason: {d.reason}")
        lines.append(f"    groups: {', '.join(sorted(d.principal.groups)) or '(none)'}")
        lines.extend(f"    trace: {s.step}: {s.outcome}" for s in d.trace)
        return "\n".join(lines)


def request_from_url(url: str, *, method: str = "GET", upload: bool = False) -> Request:
    """A Request as the proxy would build it for this URL (host normalised). Raises ValueError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL")
    host = normalise_host(parts.netloc.rpartition("@")[2])
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Request(
        host=host,
        scheme=parts.scheme,
        method=method.upper(),
        path=path,
        port=parts.port,
        upload=upload,
    )


def run_policy_tests(policy: CompiledPolicy) -> list[PolicyTestResult]:
    """Run every test in the policy's `tests:`, with no grants or emergencies in force."""
    return [_run(policy, t) for t in policy.tests]


def _run(policy: CompiledPolicy, test: PolicyTest) -> PolicyTestResult:
    try:
        request = request_from_url(test.url, method=test.method, upload=test.upload)
        principal = resolve_principal(policy, test.client, user=test.user, mac=test.mac)
    except ValueError as e:
        return PolicyTestResult(test, None, (f"cannot run: {e}",))
    decision = decide(policy, request, principal, test.at, Overrides.EMPTY)
    problems = []
    if decision.action is not test.expect:
        problems.append(f"expected {test.expect.value}, got {decision.action.value}")
    if test.rule is not None and decision.rule_id != test.rule:
        problems.append(
            f"expected rule {test.rule!r}, got {decision.rule_id or 'no rule (default)'}"
        )
    if test.basis is not None and decision.basis.value != test.basis:
        problems.append(f"expected basis {test.basis}, got {decision.basis.value}")
    return PolicyTestResult(test, decision, tuple(problems))
