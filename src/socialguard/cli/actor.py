"""Who is acting, and whether their role lets them: the gate every changing command passes.

The actor of a change is the real OS user (`getuid`), or the sudo user when root runs it under
sudo (uid 0 and `SUDO_UID`): only root can have been given that variable by sudo, so it is ignored
for everyone else. When the rules file names `roles:`, `--by` may only repeat that name, and each
change is checked against the actor's roles (engine/roles.py); a refusal is recorded in the store
as an `admin_refused` event (it reaches the decision log like every change) and exits 5. Root
without sudo acts as `root`, which a role must name (`user:root`) like anyone else.

Roles are read from the rules file the proxy records in force in the state directory
(`rules-in-force.json`), so `--rules` cannot point the check at a file that names no roles; before
any proxy ran, from `--rules`. With no roles at all nothing is checked and `--by` is recorded as
given (the real OS user beside it, in the event's source), as before roles existed.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socialguard import paths
from socialguard.engine.roles import Admin, AdminAct, Roles, authorize, target_groups
from socialguard.errors import ConfigError, PolicyError, RoleRefused
from socialguard.overrides import Actor, Limits, Store
from socialguard.overrides.records import _tty

__all__ = ["Gate", "acting", "os_admin"]


def os_admin(environ: Mapping[str, str] | None = None, uid: int | None = None) -> Admin:
    """The person behind this process: the real user, or under sudo (as root) the sudo user."""
    env = os.environ if environ is None else environ
    real = os.getuid() if uid is None else uid
    sudo_uid = env.get("SUDO_UID", "")
    if real == 0 and sudo_uid.isdigit():
        real = int(sudo_uid)
    try:
        entry = pwd.getpwuid(real)
    except KeyError:
        return Admin(f"uid:{real}")
    groups: set[str] = set()
    for gid in os.getgrouplist(entry.pw_name, entry.pw_gid):
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return Admin(entry.pw_name, frozenset(groups))


def roles_policy(rules: Path | None, state: Path | None) -> Any:
    """The compiled policy whose `roles:` judge this command (see the module docstring), or None
    when there is no rules file at all (then no roles are known and nothing is checked).

    When the state directory records a rules file in force, that file alone is read: one that
    cannot be read refuses the change (exit 2) rather than falling back to `--rules`, which the
    person acting chooses."""
    from socialguard.policy import load_policy
    from socialguard.policy.publish import read_in_force

    in_force = read_in_force(paths.state_dir(state))
    if in_force is not None:  # missing too: never fall back to a file the actor names
        try:
            return load_policy(Path(in_force.rules_file))
        except (PolicyError, OSError) as e:
            raise ConfigError(
                f"{in_force.rules_file}: the rules in force cannot be read, so the roles that "
                f"bind this change are unknown: {e}"
            ) from e
    path = paths.rules_path(rules)
    try:
        return load_policy(path) if path.is_file() else None
    except PolicyError:
        return None  # as before roles: commands that need the policy say so themselves


@dataclass(frozen=True, slots=True)
class Gate:
    """The actor of this command and the roles that bind them."""

    admin: Admin
    actor: Actor
    roles: Roles
    policy: Any = None
    claimed: str | None = None  # a --by naming someone else (refused when roles are configured)

    def check(self, store: Store, act: AdminAct, details: dict[str, Any] | None = None) -> None:
        """Raise RoleRefused (after recording the attempt) unless the actor may do `act`."""
        if not self.roles.configured:
            return
        if self.claimed is not None:
            reason = (
                f"--by {self.claimed}: changes are recorded under the real OS user "
                f"({self.admin.user}); --by may only repeat that name"
            )
        else:
            verdict = authorize(self.roles, self.admin, act)
            if verdict.allowed:
                return
            reason = verdict.reason
        store.record_refusal(
            self.actor, act.action, act.target, reason, {**(details or {}), "claimed": self.claimed}
        )
        raise RoleRefused(f"refused: {reason}")

    def groups_of(self, who: str) -> frozenset[str] | None:
        """The policy groups of a grant's `who` (None: the rules file cannot tell)."""
        if who == "all":
            return None
        return target_groups(self.policy, who) if self.policy is not None else None

    def act(
        self,
        action: Any,
        who: str,
        sites: tuple[str, ...] | list[str],
        limits: Limits | None,
        **facts: Any,
    ) -> AdminAct:
        """The AdminAct for a change on `who` opening `sites`. The services a site opens are the
        roles policy's (the one in force), not those of a `--rules` file the actor chose."""
        if self.policy is not None:
            limits = Limits.from_policy(self.policy)
        return AdminAct(
            action=action,
            target=who,
            groups=self.groups_of(who),
            services=tuple(limits.service_of(s) if limits else None for s in sites),
            scope_all=who == "all",
            **facts,
        )


def acting(by: str | None, rules: Path | None, state: Path | None) -> Gate:
    """The gate for a changing command: who acts (the real OS user) and their roles."""
    admin = os_admin()
    policy = roles_policy(rules, state)
    roles: Roles = policy.roles if policy is not None else Roles()
    where = f"{socket.gethostname()}:{_tty()}"
    claim = (by or "").strip() or None
    claimed = claim if claim is not None and claim != admin.user else None
    if roles.configured or claimed is None:
        return Gate(admin, Actor(admin.user, where), roles, policy, claimed)
    return Gate(admin, Actor(claimed, f"{where} (os user {admin.user})"), roles, policy, None)
