"""The decision log's record schema: what one line says, and what it never says.

Modelled on Open Policy Agent's decision logs: a versioned schema (`v`), a `decision_id` the block
page shows as its reference, the policy revision (`policy_version`), and redaction that is declared
rather than implied: every decision record lists in `erased` what the request carried that the log
left out (`path`, `query`), and in `masked` what it shortened. Bodies, headers, cookies and
credentials have no field here at all, so no caller can log them by accident.

These functions build plain dicts; `AuditLog.write` adds the chain fields (`seq`, `ts`, `node`,
`prev`, `h`).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

from socialguard.engine.model import Basis, Decision

from .chain import encode_event

SCHEMA_VERSION = 1

# Record types. Decisions and admin events come from the proxy; the rest are the chain's own
# bookkeeping.
TYPE_DECISION = "decision"
TYPE_ADMIN = "admin"
TYPE_FILE_OPEN = "file_open"
TYPE_FILE_CLOSE = "file_close"

# Fields the writer owns; an event that carries them has them replaced.
CHAIN_FIELDS = frozenset({"v", "seq", "ts", "node", "prev", "h"})

# Never logged whatever a caller passes as **extra: request content, not decision facts.
FORBIDDEN_EXTRA = frozenset(
    {
        "body",
        "content",
        "headers",
        "cookie",
        "cookies",
        "authorization",
        "password",
        "query",
        "token",
    }
)

MAX_PATH = 256
# What the network chooses is capped before it is stored (and the cut declared in `masked`): a
# valid host name has at most 253 characters, a method is a short token, and nothing a client
# sends may make one record (or one line an administrator reads) as large as it likes.
MAX_HOST = 255
MAX_METHOD = 32
MAX_URL = 1024

# Stages at which a request (and so a path) exists; `connection` (TLS) and `tcp` have none.
HTTP_STAGES = frozenset({"request", "websocket", "response"})

# Crockford base32 without I, L, O, U: readable over the phone from a block page.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# A random byte to a digit: byte mod 32, so each of the 32 digits stands for exactly 8 byte values.
_BYTE_TO_DIGIT = bytes(_ALPHABET[b & 31].encode("ascii")[0] for b in range(256))
_ID_BATCH = 256  # ids made from one os.urandom call
_id_pool: list[str] = []


def _refill_ids() -> None:
    """Make `_ID_BATCH` ids from one draw of the OS's randomness (one syscall and one C-level
    translation, not a syscall per decision). `list.extend` and `list.pop` are atomic: threads
    may share the pool."""
    text = os.urandom(_ID_BATCH * 12).translate(_BYTE_TO_DIGIT).decode("ascii")
    _id_pool.extend(
        f"{text[i : i + 4]}-{text[i + 4 : i + 8]}-{text[i + 8 : i + 12]}"
        for i in range(0, _ID_BATCH * 12, 12)
    )


# A forked child must not hand out its parent's ids again.
os.register_at_fork(after_in_child=_id_pool.clear)


def new_decision_id() -> str:
    """A short, readable reference id (e.g. `K7Q2-9XMD-4TRA`): 60 random bits, unambiguous letters.

    Random rather than sequential so that an id on a block page reveals nothing about traffic
    volume. The bits come from the OS's CSPRNG (as `secrets` does), made into ids in batches:
    every decision takes one, and a syscall per decision showed in the proxy's profile.
    """
    while True:
        try:
            return _id_pool.pop()
        except IndexError:
            _refill_ids()


def cap(value: str, limit: int, name: str, masked: list[str]) -> str:
    """`value` cut to `limit` characters; when cut, `name` is added to `masked`."""
    if len(value) <= limit:
        return value
    masked.append(name)
    return value[:limit]


def cap_field(event: dict[str, Any], name: str, limit: int) -> None:
    """Cap `event[name]` (a string from the network) in place, declaring the cut in `masked`."""
    value = event.get(name)
    if isinstance(value, str) and len(value) > limit:
        event[name] = value[:limit]
        event.setdefault("masked", []).append(name)


def _redact_path(path: str) -> tuple[str, list[str], list[str]]:
    """Keep only the path: drop the query string and fragment, cap the length; say what was
    removed."""
    erased: list[str] = []
    masked: list[str] = []
    for sep in ("?", "#"):
        if sep in path:
            path = path.split(sep, 1)[0]
            if "query" not in erased:
                erased.append("query")
    if len(path) > MAX_PATH:
        path = path[:MAX_PATH]
        masked.append("path")
    return path, erased, masked


def decision_event(
    decision: Decision,
    *,
    decision_id: str,
    stage: str,
    client: str,
    scheme: str | None = None,
    method: str | None = None,
    path: str | None = None,
    sni: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One decision as a log event.

    `stage` says where the proxy decided (`connection`, `request`, `websocket`, ...). `path` is
    given only when the policy's `logging.paths` asks for it; its query string is always erased.
    `sni` is kept only when it differs from the host (domain fronting is worth seeing). `extra`
    carries facts the proxy adds (`mismatch`, `verdict`, `error`, ...); request content is refused
    there too.
    """
    principal = decision.principal
    cut: list[str] = []  # what the network sent too long, capped here
    event: dict[str, Any] = {
        "type": TYPE_DECISION,
        "decision_id": decision_id,
        "stage": stage,
        "client": client,
        "user": principal.user,
        "device": principal.device,
        "groups": sorted(principal.groups),
        "host": cap(decision.host, MAX_HOST, "host", cut),
    }
    if principal.source is not None:
        # the identity source that named the person (engine/identity.py): added within schema
        # v1, present only when one did
        event["identified_by"] = principal.source
    if sni and sni != decision.host:
        event["sni"] = cap(sni, MAX_HOST, "sni", cut)
    if scheme is not None:
        event["scheme"] = scheme
    if method is not None:
        event["method"] = cap(method, MAX_METHOD, "method", cut)
    erased: list[str] = []
    masked: list[str] = []
    if path is not None:
        event["path"], erased, masked = _redact_path(path)
    elif stage in HTTP_STAGES:
        erased.append("path")  # an HTTP request had a path; the policy did not ask to log it
    masked = cut + masked
    event["category"] = decision.category
    if decision.service is not None:
        # the service (engine/services.py) the host belongs to, by id: added within schema v1,
        # present only when the host belongs to one (older records and other hosts lack it)
        event["service"] = decision.service
    event["rule"] = decision.rule_id
    # A connection's outcome is its verdict (pass, inspect, block), as /metrics labels it: an
    # inspected connection is not a blocked visit (its requests are decided, and logged, each).
    verdict = extra.get("verdict")
    event["action"] = str(verdict) if verdict is not None else str(decision.action)
    event["basis"] = str(decision.basis)
    event["override_id"] = decision.override_id
    event["policy_version"] = decision.policy_version
    for key, value in extra.items():
        if key.lower() in FORBIDDEN_EXTRA:
            erased.append(key)
            continue
        event[key] = value
    if erased:
        event["erased"] = erased
    if masked:
        event["masked"] = masked
    return event


_ID_SLOT = "@decision-id@"  # never a decision id (those are base32 digits and dashes)
_ENCODED_MAX = 4096
# The bases whose Decision objects the engine hands out again (its cache holds decisions without
# overrides). A decision under a grant or an emergency, or an error or ambiguity refused, is a new
# object each time: remembering it would only fill the cache (the soak of issue 19 grew 5 MB in
# 10 minutes that way) and push out the decisions that do repeat.
_REPEATING = frozenset({Basis.RULE, Basis.DEFAULT})


class EncodedDecisions:
    """`decision_event(...)` already JSON-encoded (as `encode_event` gives it), remembered.

    A proxy logs the same decision for the same client again and again (every request of a page,
    every poll of an open tab): the engine hands back the very same Decision object from its
    cache, and only the decision id differs between those records. So the encoded members are
    kept with a slot for the id, and a repeat costs one string join instead of building the event
    dict and encoding it. The text is exactly what the uncached path writes (a test holds them
    equal), so nothing downstream can tell. The entry holds the decision, so its id() is not
    reused while the entry lives; the identity check is a second guard. Only decisions that can
    repeat are remembered (see `_REPEATING`); the others are encoded each time.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[object, ...], tuple[Decision, str, str]] = {}

    def __len__(self) -> int:
        """How many encodings are remembered."""
        return len(self._known)

    def fields(
        self,
        decision: Decision,
        *,
        decision_id: str,
        stage: str,
        client: str,
        scheme: str | None = None,
        method: str | None = None,
        path: str | None = None,
        sni: str | None = None,
        extra: tuple[tuple[str, Hashable], ...] = (),
    ) -> str:
        """`encode_event(decision_event(decision, ..., **dict(extra)))`: `extra` holds the few
        facts that repeat with the decision (a connection's verdict), in the order to write them."""
        key = (id(decision), stage, client, scheme, method, path, sni, extra)
        known = self._known.get(key)
        if known is None or known[0] is not decision:
            event = decision_event(
                decision,
                decision_id=_ID_SLOT,
                stage=stage,
                client=client,
                scheme=scheme,
                method=method,
                path=path,
                sni=sni,
                **dict(extra),
            )
            text = encode_event(event)
            # decision_id is the second member: the first occurrence of the slot is its value
            before, _, after = text.partition(_ID_SLOT)
            known = (decision, before, after)
            if decision.basis not in _REPEATING:
                return before + decision_id + after
            if len(self._known) >= _ENCODED_MAX:
                self._known.clear()
            self._known[key] = known
        return known[1] + decision_id + known[2]


def admin_event(
    action: str,
    *,
    by: str,
    source: str,
    target: str,
    reason: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An administrator's change (grant issued, emergency declared, ...) for the chain.

    `action` is the store's name for the change (e.g. `grant_added`, `emergency_started`,
    `emergency_self_declared`, `emergency_acknowledged`); `source` says from where (cli@host, block
    page from 10.0.0.5); `target` what it applies to (user:NAME, group:NAME, all, or an override
    id).
    """
    event: dict[str, Any] = {
        "type": TYPE_ADMIN,
        "action": action,
        "by": by,
        "source": source,
        "target": target,
        "reason": reason,
    }
    if details:
        details = dict(details)
        url = details.get("url")
        if isinstance(url, str) and ("?" in url or "#" in url):
            url = details["url"] = url.split("#", 1)[0].split("?", 1)[0]
            event["erased"] = ["details.url.query"]
        if isinstance(url, str) and len(url) > MAX_URL:  # the URL a block-page form was for
            details["url"] = url[:MAX_URL]
            event["masked"] = ["details.url"]
        event["details"] = details
    return event
