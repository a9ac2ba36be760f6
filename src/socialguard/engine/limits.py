"""Whose daily allowance a block-page form spends: per person, and what "person" means without one.

The policy lets a *person* declare an emergency a few times a day and ask administration for
access. The proxy knows a person by their sign-in (`user`), else by their device in the inventory
(`device`); then the allowance is theirs (`emergency_per_day`, `requests_per_day`), whatever
address they come from.

Without either, all the proxy has is an address, and addresses are cheap: a laptop takes another
from DHCP, an IPv6 host makes up new ones, a script binds to any. Counting per address alone would
let one person multiply their allowance by the addresses they can use (ten addresses: ten
emergencies). So an unidentified principal spends two allowances at once: its address's
(`emergency_per_day`, `requests_per_day`, as a person's), and one **shared by every unidentified
principal of the district** (`emergency_per_day_unidentified`, `requests_per_day_unidentified`).
The shared one is the hard bound: whoever rotates addresses gets at most that many a day, and so,
together, does everyone the proxy cannot name. A district that wants each person's own
allowance gives the proxy identity (directory sign-in, the device inventory). Counting per /24
would neither stop a rotating IPv6 host nor be fair to a staff subnet, so it is not offered.

Pure: the store counts atomically what these allowances name (socialguard.overrides).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Principal

UNIDENTIFIED_PREFIX = "ip:"  # the person key of a principal known only by its address


@dataclass(frozen=True, slots=True)
class Allowance:
    """At most `per_day` uses a day by the person `key` or, when `shared`, by every person whose
    key starts with `key`. `name` says which limit it is, for the message when it is used up."""

    key: str
    per_day: int
    name: str
    shared: bool = False


def person_key(p: Principal) -> str:
    """Whom a form's use is counted against: the user if known, else the device, else the
    address."""
    if p.user:
        return f"user:{p.user}"
    if p.device:
        return f"device:{p.device}"
    return f"{UNIDENTIFIED_PREFIX}{p.client_ip}"


def allowances(
    p: Principal, *, per_person: int, per_unidentified: int, what: str
) -> tuple[Allowance, ...]:
    """The allowances one use spends, all of which must have room: the person's, and for an
    unidentified principal also the district's shared one. `what` names the setting's stem
    (`emergency` or `requests`)."""
    own = Allowance(person_key(p), per_person, f"{what}_per_day")
    if p.user or p.device:
        return (own,)
    shared = Allowance(
        UNIDENTIFIED_PREFIX, per_unidentified, f"{what}_per_day_unidentified", shared=True
    )
    return (own, shared)
