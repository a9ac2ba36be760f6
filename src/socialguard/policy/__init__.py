"""The rules file: schema, loading with file:line errors, compilation, and the file's own tests.

`load_policy(path)` is the entry point; the engine's API is re-exported here too, so callers that
load a policy and decide against it need one import.
"""

from socialguard.engine import (
    CompiledPolicy,
    Overrides,
    decide,
    decide_connection,
    normalise_host,
    resolve_principal,
)

from .loader import load_policy
from .testing import PolicyTestResult, request_from_url, run_policy_tests

__all__ = [
    "CompiledPolicy",
    "Overrides",
    "PolicyTestResult",
    "decide",
    "decide_connection",
    "load_policy",
    "normalise_host",
    "request_from_url",
    "resolve_principal",
    "run_policy_tests",
]
