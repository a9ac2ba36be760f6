"""Turn validated rules-file models into a CompiledPolicy, resolving every cross-reference.

The models (schema.py) know the shape of each section; only here are all sections known at once,
so this is where `who: [staf]` becomes "unknown group 'staf' (did you mean 'staff'?)" with the line
it was written on, where lists and inventories are read, and where unreachable rules are spotted.
Problems are collected, never raised one at a time: IT fixes a file in one pass.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from socialguard.engine.compiled import (
    DEFAULT_PORTS,
    AuthSettings,
    Category,
    CompiledPolicy,
    CompiledRule,
    Device,
    DeviceInventory,
    District,
    GroupNetworks,
    IPNetwork,
    LoggingSettings,
    OverrideLimits,
    PolicyTest,
    UrlPrefix,
    When,
)
from socialguard.engine.domains import DomainIndexBuilder, NetworkIndex
from socialguard.engine.gateway import parse_gateway_service
from socialguard.engine.hosts import is_ip_literal, normalise_host
from socialguard.engine.identity import DirectorySpec, IdentitySettings
from socialguard.engine.model import Action, Bypass, TraceStep
from socialguard.engine.notifications import NotificationSettings
from socialguard.engine.paths import request_target
from socialguard.engine.roles import Role, Roles
from socialguard.engine.schedule import Period, Schedule, parse_days, parse_period
from socialguard.engine.services import Service, ServiceCatalogue, shared_infrastructure
from socialguard.engine.uploads import UploadRules
from socialguard.errors import PolicyError, Problem

from .inventory import read_inventory
from .lists import read_domain_list
from .schema import (
    CategorySpec,
    GroupSpec,
    IncludeFile,
    ListRef,
    PolicyFile,
    RuleSpec,
    ScheduleSpec,
    ServiceSpec,
    parse_date,
    parse_date_range,
    parse_duration,
)
from .uploads import compile_uploads
from .yamlpos import Located, PathKey

__all__ = ["SourceFile", "compile_policy"]

_SINGULAR = {"schedules": "schedule", "groups": "group", "categories": "category"}
# A bound on how many bad lines of one list are reported one by one (the rest are counted).
_MAX_LIST_WARNINGS = 20


@dataclass
class SourceFile:
    """One validated file: its model, where it is, and the line map for its messages."""

    path: Path
    located: Located
    spec: PolicyFile | IncludeFile

    @property
    def shown(self) -> str:
        return self.located.file

    def problem(self, path: PathKey, message: str) -> Problem:
        return self.located.problem(path, message)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class _Compiler:
    main: SourceFile
    includes: list[SourceFile]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    hashed: list[Path] = field(default_factory=list)  # list/inventory files, for version and reload
    schedule_specs: dict[str, tuple[SourceFile, ScheduleSpec]] = field(default_factory=dict)
    group_specs: dict[str, tuple[SourceFile, GroupSpec]] = field(default_factory=dict)
    category_specs: dict[str, tuple[SourceFile, CategorySpec]] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)  # rules switched off with `enabled: false`
    service_ids: frozenset[str] = frozenset()  # known once services() ran, for rules' `services:`

    @property
    def spec(self) -> PolicyFile:
        assert isinstance(self.main.spec, PolicyFile)
        return self.main.spec

    # -- sections gathered from the main file and its includes ------------------------------------

    def gather(self) -> None:
        for src in [self.main, *self.includes]:
            for section, target in (
                ("schedules", self.schedule_specs),
                ("groups", self.group_specs),
                ("categories", self.category_specs),
            ):
                for name, spec in getattr(src.spec, section).items():
                    if name in target:
                        first = target[name][0]
                        self.problems.append(
                            src.problem(
                                (section, name),
                                f"{_SINGULAR[section]} {name!r} is already defined in "
                                f"{first.shown}:{first.located.line_of((section, name))}",
                            )
                        )
                        continue
                    target[name] = (src, spec)  # type: ignore[assignment]

    # -- district, schedules -----------------------------------------------------------------------

    def district(self) -> District:
        d = self.spec.district
        return District(d.name, ZoneInfo(d.timezone), d.policy_url, d.contact)

    def schedules(self, zone: ZoneInfo) -> dict[str, Schedule]:
        out: dict[str, Schedule] = {}
        for name in self.schedule_specs:
            resolved = self._resolve_schedule(name, [])
            if resolved is None:
                continue
            weekly, closed, special = resolved
            out[name] = Schedule.create(name, zone, weekly, frozenset(closed), special)
        return out

    def _resolve_schedule(
        self, name: str, chain: list[str]
    ) -> tuple[tuple[tuple[Period, ...], ...], set[date], dict[date, tuple[Period, ...]]] | None:
        src, spec = self.schedule_specs[name]
        base: (
            tuple[tuple[tuple[Period, ...], ...], set[date], dict[date, tuple[Period, ...]]] | None
        )
        base = (tuple(() for _ in range(7)), set(), {})
        if spec.extends is not None:
            if spec.extends in chain or spec.extends == name:
                self.problems.append(
                    src.problem(
                        ("schedules", name, "extends"),
                        f"schedule {name!r} extends itself through {spec.extends!r}",
                    )
                )
                return None
            if spec.extends not in self.schedule_specs:
                self.problems.append(
                    src.problem(
                        ("schedules", name, "extends"),
                        f"unknown schedule {spec.extends!r}"
                        f"{_suggest(spec.extends, self.schedule_specs)}",
                    )
                )
                return None
            base = self._resolve_schedule(spec.extends, [*chain, name])
            if base is None:
                return None
        weekly_base, closed_base, special_base = base
        weekly: list[tuple[Period, ...]] = list(weekly_base) if not spec.weekly else [()] * 7
        for key, periods in spec.weekly.items():
            parsed = tuple(parse_period(p) for p in periods)
            for day in parse_days(key):
                weekly[day] = parsed
        closed = set(closed_base)
        for item in spec.closed:
            first, last = parse_date_range(item)
            closed.update(first + timedelta(days=i) for i in range((last - first).days + 1))
        special = dict(special_base)
        for key, periods in spec.special.items():
            special[parse_date(key)] = tuple(parse_period(p) for p in periods)
        return tuple(weekly), closed, special

    # -- groups and devices ------------------------------------------------------------------------

    def groups(
        self,
    ) -> tuple[
        GroupNetworks, dict[str, frozenset[str]], dict[str, frozenset[str]], DeviceInventory
    ]:
        networks: list[tuple[IPNetwork, str]] = []
        users: dict[str, set[str]] = {}
        direct_parents: dict[str, set[str]] = {name: set() for name in self.group_specs}
        devices_by_id: dict[str, Device] = {}
        for name, (src, spec) in self.group_specs.items():
            networks.extend((ipaddress.ip_network(n), name) for n in spec.networks)
            for u in spec.users:
                users.setdefault(u, set()).add(name)
            for i, child in enumerate(spec.include):
                if child not in self.group_specs:
                    self.problems.append(
                        src.problem(
                            ("groups", name, "include", i),
                            f"unknown group {child!r}{_suggest(child, self.group_specs)}",
                        )
                    )
                    continue
                direct_parents[child].add(name)
            if spec.devices is not None:
                self._read_devices(src, name, spec.devices, devices_by_id)
        parents: dict[str, frozenset[str]] = {}
        for name in self.group_specs:
            seen = {name}
            todo = [name]
            while todo:
                for p in direct_parents.get(todo.pop(), ()):
                    if p == name:
                        src = self.group_specs[name][0]
                        self.problems.append(
                            src.problem(
                                ("groups", name, "include"),
                                f"group {name!r} includes itself (a cycle)",
                            )
                        )
                    elif p not in seen:
                        seen.add(p)
                        todo.append(p)
            parents[name] = frozenset(seen)
        by_mac = {d.mac: d for d in devices_by_id.values() if d.mac}
        by_ip = {d.ip: d for d in devices_by_id.values() if d.ip}
        inventory = DeviceInventory(by_mac, by_ip, devices_by_id)
        return (
            GroupNetworks(tuple(networks)),
            {u: frozenset(g) for u, g in users.items()},
            parents,
            inventory,
        )

    def _read_devices(self, src: SourceFile, group: str, rel: str, out: dict[str, Device]) -> None:
        path = src.path.parent / rel
        shown = str(Path(src.shown).parent / rel)
        rows, problems = read_inventory(path, shown)
        if problems and not rows and not path.exists():
            self.problems.append(
                src.problem(("groups", group, "devices"), f"device inventory {rel!r} not found")
            )
            return
        self.problems.extend(problems)
        self.hashed.append(path)
        for row in rows:
            have = out.get(row.device)
            groups = (have.groups if have else frozenset()) | {group}
            out[row.device] = Device(row.device, row.owner, row.mac, row.ip, groups)

    # -- categories --------------------------------------------------------------------------------

    def categories(
        self, builder: DomainIndexBuilder, ip_entries: list[tuple[IPNetwork, str]]
    ) -> dict[str, Category]:
        out: dict[str, Category] = {}
        for name, (src, spec) in self.category_specs.items():
            tag = f"category:{name}"
            inline = self._domains(src, ("categories", name, "domains"), spec.domains)
            listed: list[list[str]] = []
            lists: list[Path] = []
            for i, item in enumerate(spec.lists):
                ref = item if isinstance(item, ListRef) else ListRef(path=item)
                domains = self._read_list(src, ("categories", name, "lists", i), ref)
                if domains is not None:
                    listed.append(domains)
                    lists.append(src.path.parent / ref.path)
            if not inline and len(listed) == 1:
                unique = listed[0]  # the reader de-duplicated it already: no copy of a 1M list
            else:
                unique = list(dict.fromkeys(d for part in (inline, *listed) for d in part))
            builder.add(unique, tag)
            ip_entries.extend((ipaddress.ip_network(n), tag) for n in spec.networks)
            out[name] = Category(
                name, spec.description, len(unique), len(spec.networks), tuple(lists)
            )
        return out

    def _domains(self, src: SourceFile, path: PathKey, raw: list[str]) -> list[str]:
        out = []
        for i, text in enumerate(raw):
            try:
                host = normalise_host(text)
            except ValueError as e:
                self.problems.append(src.problem((*path, i), str(e)))
                continue
            if is_ip_literal(host):
                self.problems.append(
                    src.problem((*path, i), f"{text!r} is an address: list it under networks")
                )
                continue
            out.append(host)
        return out

    def _read_list(self, src: SourceFile, path: PathKey, ref: ListRef) -> list[str] | None:
        file = src.path.parent / ref.path
        shown = str(Path(src.shown).parent / ref.path)
        if not file.is_file():
            self.problems.append(
                src.problem(path, f"domain list {ref.path!r} not found (looked for {shown})")
            )
            return None
        try:
            result = read_domain_list(file, ref.format)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            self.problems.append(src.problem(path, f"cannot read domain list {shown}: {e}"))
            return None
        self.hashed.append(file)
        for line, text, why in result.invalid[:_MAX_LIST_WARNINGS]:
            self.warnings.append(Problem(shown, line, "", f"line skipped: {why}: {text[:80]!r}"))
        extra = len(result.invalid) - _MAX_LIST_WARNINGS
        if extra > 0:
            self.warnings.append(Problem(shown, None, "", f"{extra} more invalid lines skipped"))
        return result.domains

    # -- services ----------------------------------------------------------------------------------

    def services(self, builder: DomainIndexBuilder) -> ServiceCatalogue:
        """The catalogue (services defined in included files), changed by the rules file's own
        `services:`; each service's domains go into the index under `service:ID`."""
        defined: dict[str, tuple[SourceFile, ServiceSpec]] = {}
        for src in self.includes:
            for sid, spec in src.spec.services.items():
                if sid in defined:
                    first = defined[sid][0]
                    self.problems.append(
                        src.problem(
                            ("services", sid),
                            f"service {sid!r} is already defined in "
                            f"{first.shown}:{first.located.line_of(('services', sid))}",
                        )
                    )
                    continue
                defined[sid] = (src, spec)
        changes = self.spec.services
        out: list[Service] = []
        for sid in [*defined, *(i for i in changes if i not in defined)]:
            found = self._service(sid, defined.get(sid), changes.get(sid))
            if found is not None:
                builder.add(list(found.domains), found.tag)
                out.append(found)
        return ServiceCatalogue.build(out)

    def _service(
        self,
        sid: str,
        base: tuple[SourceFile, ServiceSpec] | None,
        change: ServiceSpec | None,
    ) -> Service | None:
        parts: list[tuple[SourceFile, ServiceSpec]] = [*([base] if base else [])]
        if change is not None:
            parts.append((self.main, change))
        name = sid
        domains: list[str] = []
        for src, spec in parts:
            name = spec.name or name
            if spec.domains is not None:
                domains = self._domains(src, ("services", sid, "domains"), spec.domains)
            domains += self._domains(src, ("services", sid, "add"), spec.add)
            for i, item in enumerate(spec.lists):
                ref = item if isinstance(item, ListRef) else ListRef(path=item)
                listed = self._read_list(src, ("services", sid, "lists", i), ref)
                domains += listed or []
        unique = list(dict.fromkeys(domains))
        src = parts[-1][0]
        for d in unique:
            shared = shared_infrastructure(d)
            if shared is not None:
                self.problems.append(
                    src.problem(
                        ("services", sid),
                        f"service {sid!r} lists {d!r}: {shared} is shared infrastructure serving "
                        "unrelated sites, never part of one service",
                    )
                )
                return None
        if not unique:
            self.problems.append(src.problem(("services", sid), f"service {sid!r} has no domains"))
            return None
        return Service(sid, name, tuple(unique))

    # -- rules -------------------------------------------------------------------------------------

    def rules(
        self,
        schedules: Mapping[str, Schedule],
        categories: Mapping[str, Category],
        devices: DeviceInventory,
        builder: DomainIndexBuilder,
        ip_entries: list[tuple[IPNetwork, str]],
    ) -> tuple[list[CompiledRule], dict[str, list[str]]]:
        out: list[CompiledRule] = []
        literal_domains: dict[str, list[str]] = {}
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.spec.rules):
            base: PathKey = ("rules", i)
            if spec.id in seen:
                self.problems.append(
                    self.main.problem(
                        (*base, "id"),
                        f"rule id {spec.id!r} is already used by rules[{seen[spec.id]}]",
                    )
                )
                continue
            seen[spec.id] = i
            rule = self._rule(
                i,
                spec,
                schedules=schedules,
                categories=categories,
                devices=devices,
                builder=builder,
                ip_entries=ip_entries,
                literal_domains=literal_domains,
            )
            if rule is not None and spec.enabled:
                out.append(rule)
            elif rule is not None:
                self.disabled.append(spec.id)
        return out, literal_domains

    def _rule(
        self,
        i: int,
        spec: RuleSpec,
        *,
        schedules: Mapping[str, Schedule],
        categories: Mapping[str, Category],
        devices: DeviceInventory,
        builder: DomainIndexBuilder,
        ip_entries: list[tuple[IPNetwork, str]],
        literal_domains: dict[str, list[str]],
    ) -> CompiledRule | None:
        base: PathKey = ("rules", i)
        n = len(self.problems)
        who = self._who(base, spec, devices)
        tags, urls = self._what(
            base,
            spec,
            categories=categories,
            builder=builder,
            ip_entries=ip_entries,
            literal_domains=literal_domains,
        )
        when = self._when(base, spec, schedules)
        if who is None or len(self.problems) > n or (spec.when is not None and when is None):
            return None
        groups, users, device_ids = who
        what = spec.what
        action = Action(spec.action)
        bypass = frozenset(Bypass(b) for b in spec.bypass or ())
        if bypass and action is Action.ALLOW:
            self.warnings.append(
                self.main.problem((*base, "bypass"), "has no effect on a rule that allows")
            )
        step = f"rule:{spec.id}"
        return CompiledRule(
            id=spec.id,
            index=i,
            description=spec.description,
            reason=spec.reason or spec.description,
            action=action,
            bypass=bypass,
            everyone=spec.who is None,
            groups=groups,
            users=users,
            devices=device_ids,
            tags=tags,
            urls=urls,
            any_destination=not (
                what.categories or what.services or what.domains or what.urls or what.networks
            ),
            methods=frozenset(m.upper() for m in what.methods)
            if what.methods is not None
            else None,
            uploads=what.uploads,
            doh=what.doh,
            when=when,
            source=f"{self.main.shown}:{self.main.located.line_of(base)}",
            step_name=step,
            no_who=TraceStep(step, "no match: not for this person"),
            no_what=TraceStep(step, "no match: destination not named"),
            no_request=TraceStep(step, "no match: request conditions (method/upload/DoH) not met"),
            not_when=TraceStep(step, _skipped(when)),
            matched=TraceStep(step, f"matched{f' ({when})' if when else ''}: {action.value}"),
        )

    def _who(
        self, base: PathKey, spec: RuleSpec, devices: DeviceInventory
    ) -> tuple[frozenset[str], frozenset[str], frozenset[str]] | None:
        """Groups, user:NAME and device:ID entries of a rule's `who`; None if one is unknown."""
        groups: set[str] = set()
        users: set[str] = set()
        device_ids: set[str] = set()
        ok = True
        for j, who in enumerate(spec.who or ()):
            kind, sep, value = who.partition(":")
            if sep and kind == "user" and value:
                users.add(value)
            elif sep and kind == "device" and value:
                device_ids.add(value)
                if value not in devices.by_id:
                    self.warnings.append(
                        self.main.problem(
                            (*base, "who", j), f"device {value!r} is not in any inventory"
                        )
                    )
            elif not sep and who in self.group_specs:
                groups.add(who)
            else:
                ok = False
                hint = (
                    _suggest(who, self.group_specs)
                    if not sep
                    else " (use a group name, user:NAME or device:ID)"
                )
                self.problems.append(
                    self.main.problem((*base, "who", j), f"unknown group {who!r}{hint}")
                )
        if spec.who is not None and not spec.who:
            ok = False
            self.problems.append(
                self.main.problem((*base, "who"), "empty: omit `who` to mean everyone")
            )
        return (frozenset(groups), frozenset(users), frozenset(device_ids)) if ok else None

    def _what(
        self,
        base: PathKey,
        spec: RuleSpec,
        *,
        categories: Mapping[str, Category],
        builder: DomainIndexBuilder,
        ip_entries: list[tuple[IPNetwork, str]],
        literal_domains: dict[str, list[str]],
    ) -> tuple[frozenset[str], tuple[UrlPrefix, ...]]:
        """The rule's destination tags: its categories and services, and rule:ID for its own
        domains."""
        what = spec.what
        tags: set[str] = set()
        for j, sid in enumerate(what.services):
            if sid not in self.service_ids:
                self.problems.append(
                    self.main.problem(
                        (*base, "what", "services", j),
                        f"unknown service {sid!r}{_suggest(sid, self.service_ids)}",
                    )
                )
            tags.add(f"service:{sid}")
        for j, c in enumerate(what.categories):
            if c not in categories:
                self.problems.append(
                    self.main.problem(
                        (*base, "what", "categories", j),
                        f"unknown category {c!r}{_suggest(c, categories)}",
                    )
                )
            tags.add(f"category:{c}")
        own_tag = f"rule:{spec.id}"
        domains = self._domains(self.main, (*base, "what", "domains"), what.domains)
        if domains:
            builder.add(domains, own_tag)
            literal_domains[spec.id] = domains
            tags.add(own_tag)
        if what.networks:
            ip_entries.extend((ipaddress.ip_network(n), own_tag) for n in what.networks)
            tags.add(own_tag)
        urls = []
        for j, text in enumerate(what.urls):
            try:
                urls.append(_url_prefix(text))
            except ValueError as e:
                self.problems.append(self.main.problem((*base, "what", "urls", j), str(e)))
        return frozenset(tags), tuple(urls)

    def _when(
        self, base: PathKey, spec: RuleSpec, schedules: Mapping[str, Schedule]
    ) -> When | None:
        if spec.when is None:
            return None
        name, negate = (
            (spec.when, False) if isinstance(spec.when, str) else (spec.when["not"], True)
        )
        if name in schedules:
            return When(schedules[name], negate)
        if name not in self.schedule_specs:  # else its own definition already failed
            self.problems.append(
                self.main.problem(
                    (*base, "when"),
                    f"unknown schedule {name!r}{_suggest(name, self.schedule_specs)}",
                )
            )
        return None


def _skipped(when: When | None) -> str:
    if when is None:
        return "skipped"
    return f"skipped: in {when.schedule.name}" if when.negate else f"skipped: outside {when}"


def _url_prefix(text: str) -> UrlPrefix:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    host = normalise_host(parts.netloc.rpartition("@")[2])
    if parts.query:
        raise ValueError(f"{text!r}: a URL prefix cannot carry a query string")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        # matched against normalised request paths, so normalised the same way
        path = request_target(parts.path or "/")
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from e
    return UrlPrefix(parts.scheme, host, path, port)


# -- shadowed rules --------------------------------------------------------------------------------


def shadow_warnings(
    src: SourceFile,
    rules: list[CompiledRule],
    literal_domains: Mapping[str, list[str]],
    parents: Mapping[str, frozenset[str]],
    index_lookup: Any,
) -> list[Problem]:
    """A rule that an earlier rule always matches first can never apply: almost certainly a
    mistake."""
    out = []
    for j, later in enumerate(rules):
        for earlier in rules[:j]:
            if _covers(earlier, later, literal_domains, parents, index_lookup):
                out.append(
                    src.problem(
                        ("rules", later.index),
                        f"rule {later.id!r} can never match: rule {earlier.id!r} "
                        f"(rules[{earlier.index}]) matches all its requests first",
                    )
                )
                break
    return out


def _covers(
    a: CompiledRule,
    b: CompiledRule,
    literal_domains: Mapping[str, list[str]],
    parents: Mapping[str, frozenset[str]],
    index_lookup: Any,
) -> bool:
    """Does rule `a` match every request rule `b` matches? (Conservative: False when unsure.)"""
    if not a.everyone:
        if b.everyone or not b.users <= a.users or not b.devices <= a.devices:
            return False
        if any(a.groups.isdisjoint(parents.get(g, {g})) for g in b.groups):
            return False
    if a.when is not None and (b.when is None or a.when != b.when):
        return False
    if a.methods is not None and (b.methods is None or not b.methods <= a.methods):
        return False
    if a.uploads is not None and a.uploads != b.uploads:
        return False
    if a.doh and not b.doh:
        return False
    if a.any_destination:
        return True
    if b.any_destination:
        return False
    for tag in b.tags:
        if tag.startswith(("category:", "service:")):
            if tag not in a.tags:
                return False
        else:
            for d in literal_domains.get(b.id, ()):
                if a.tags.isdisjoint(index_lookup(d)):
                    return False
            if b.id not in literal_domains:
                return False  # networks: not compared
    for url in b.urls:
        if a.tags.isdisjoint(index_lookup(url.host)) and not any(
            u.scheme == url.scheme
            and u.host == url.host
            and u.port == url.port
            and url.path.startswith(u.path)
            for u in a.urls
        ):
            return False
    return True


# -- tests -----------------------------------------------------------------------------------------


def compile_tests(
    src: SourceFile, spec: PolicyFile, zone: ZoneInfo, problems: list[Problem]
) -> list[PolicyTest]:
    out = []
    for i, t in enumerate(spec.tests):
        base: PathKey = ("tests", i)
        try:
            at = t.at if isinstance(t.at, datetime) else datetime.fromisoformat(t.at.strip())
        except ValueError:
            problems.append(
                src.problem(
                    (*base, "at"), f"{t.at!r} is not an ISO-8601 time (e.g. 2026-12-01T10:00)"
                )
            )
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=zone)
        parts = urlsplit(t.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(src.problem((*base, "url"), f"{t.url!r} is not an http(s) URL"))
            continue
        line = src.located.line_of(base)
        name = t.name or f"{t.expect} {t.url} from {t.client} at {t.at}"
        out.append(
            PolicyTest(
                line,
                name,
                t.url,
                t.client,
                at,
                Action(t.expect),
                t.user,
                t.mac,
                t.method.upper(),
                t.upload,
                t.rule,
                t.basis,
            )
        )
    return out


def policy_version(sources: list[SourceFile], data_files: list[Path]) -> str:
    """Hash of what the policy means: the validated models (not comments, not the file's own
    tests) and the bytes of every list, inventory and fingerprint file."""
    h = hashlib.sha256()
    for src in sources:
        # the file's own tests do not change any decision, so they do not change the version
        meaning = src.spec.model_dump(mode="json", exclude={"tests"})
        h.update(json.dumps(meaning, sort_keys=True).encode())
    for path in data_files:
        h.update(b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"unreadable")
    return h.hexdigest()[:16]


def _uploads(main: SourceFile, spec: PolicyFile, c: _Compiler) -> UploadRules:
    """The `uploads:` section, compiled by policy/uploads.py; its fingerprint files are watched."""
    try:
        rules = compile_uploads(spec.uploads, main.path.parent, str(Path(main.shown).parent))
    except PolicyError as e:
        c.problems.extend(e.problems)
        return UploadRules()
    c.hashed.extend(main.path.parent / rel for rel in spec.uploads.fingerprints)
    return rules


def compile_policy(
    main: SourceFile, includes: list[SourceFile]
) -> tuple[CompiledPolicy | None, list[Problem]]:
    """Compile, returning (policy, []) or (None, every problem found)."""
    c = _Compiler(main, includes)
    c.gather()
    spec = c.spec
    district = c.district()
    schedules = c.schedules(district.timezone)
    group_networks, group_users, parents, devices = c.groups()
    builder = DomainIndexBuilder()
    ip_entries: list[tuple[IPNetwork, str]] = []
    categories = c.categories(builder, ip_entries)
    services = c.services(builder)
    c.service_ids = frozenset(services.services)
    rules, literal_domains = c.rules(schedules, categories, devices, builder, ip_entries)
    tests = compile_tests(main, spec, district.timezone, c.problems)
    htpasswd = None
    if spec.auth.htpasswd is not None:
        htpasswd = main.path.parent / spec.auth.htpasswd
        if not htpasswd.is_file():
            c.problems.append(
                main.problem(
                    ("auth", "htpasswd"), f"htpasswd file {spec.auth.htpasswd!r} not found"
                )
            )
    uploads = _uploads(main, spec, c)
    _check_identity(main, spec, c)
    _check_notifications(main, spec, c)
    roles = _roles(main, spec, c)
    if c.problems:
        return None, c.problems
    index = builder.build()
    warnings = [*c.warnings, *shadow_warnings(main, rules, literal_domains, parents, index.lookup)]
    policy = CompiledPolicy(
        version=policy_version([main, *includes], c.hashed),
        district=district,
        fail_mode=spec.fail,
        default=Action(spec.default),
        ip_literals=spec.ip_literals,
        blocked_connections=spec.blocked_connections,
        gateway_services=tuple(parse_gateway_service(t) for t in spec.gateway_services),
        rules=tuple(rules),
        index=index,
        ip_index=NetworkIndex(tuple(ip_entries)),
        group_networks=group_networks,
        group_users=group_users,
        group_parents=parents,
        schedules=schedules,
        categories=categories,
        devices=devices,
        overrides=OverrideLimits(
            parse_duration(spec.overrides.grant_max),
            spec.overrides.emergency_minutes,
            spec.overrides.emergency_per_day,
            spec.overrides.emergency_per_day_unidentified,
            spec.overrides.requests_per_day,
            spec.overrides.requests_per_day_unidentified,
        ),
        logging=LoggingSettings(spec.logging.paths),
        auth=AuthSettings(htpasswd),
        source_files=(main.path, *(s.path for s in includes), *c.hashed),
        warnings=tuple(warnings),
        tests=tuple(tests),
        rules_by_id={r.id: r for r in rules},
        disabled_rules=tuple(c.disabled),
        uploads=uploads,
        accounts=spec.accounts,
        identity=IdentitySettings.compile(spec.identity),
        services=services,
        notifications=NotificationSettings.compile(spec.notifications, main.path.parent),
        roles=roles,
    )
    return policy, []


def _check_notifications(main: SourceFile, spec: PolicyFile, c: _Compiler) -> None:
    """`notifications:` names groups and webhooks that exist, files that do, and a relay for
    the addresses it mails (engine/notifications.py)."""
    n = spec.notifications
    base = ("notifications",)
    files: list[tuple[PathKey, str | None, str]] = []
    if n.email is not None:
        files.append(((*base, "email", "password_file"), n.email.password_file, "password file"))
        files.append(((*base, "email", "ca_file"), n.email.ca_file, "CA file"))
    for name, hook in n.webhooks.items():
        files.append(((*base, "webhooks", name, "secret_file"), hook.secret_file, "secret file"))
    for where, rel, what in files:
        if rel is not None and not (main.path.parent / rel).is_file():
            c.problems.append(main.problem(where, f"{what} {rel!r} not found"))
    for i, r in enumerate(n.recipients):
        for j, g in enumerate(r.groups or ()):
            if g not in c.group_specs:
                c.problems.append(
                    main.problem(
                        (*base, "recipients", i, "groups", j),
                        f"unknown group {g!r}{_suggest(g, c.group_specs)}",
                    )
                )
        for j, w in enumerate(r.webhook):
            if w not in n.webhooks:
                known = ", ".join(sorted(n.webhooks)) or "none defined under notifications.webhooks"
                c.problems.append(
                    main.problem(
                        (*base, "recipients", i, "webhook", j),
                        f"unknown webhook {w!r} (known: {known})",
                    )
                )
        if r.email and n.email is None:
            c.problems.append(
                main.problem(
                    (*base, "recipients", i, "email"),
                    "addresses to mail, but no relay: add notifications.email (host, from)",
                )
            )


def _roles(main: SourceFile, spec: PolicyFile, c: _Compiler) -> Roles:
    """`roles:` names groups and services that exist, and grants no longer than the policy's
    `overrides.grant_max` (engine/roles.py)."""
    policy_max = parse_duration(spec.overrides.grant_max)
    out: list[Role] = []
    for name, r in spec.roles.items():
        at: PathKey = ("roles", name)
        if not isinstance(r.groups, str):
            for i, g in enumerate(r.groups):
                if g not in c.group_specs:
                    c.problems.append(
                        main.problem(
                            (*at, "groups", i), f"unknown group {g!r}{_suggest(g, c.group_specs)}"
                        )
                    )
        if not isinstance(r.services, str):
            for i, s in enumerate(r.services):
                if s not in c.service_ids:
                    c.problems.append(
                        main.problem(
                            (*at, "services", i),
                            f"unknown service {s!r}{_suggest(s, c.service_ids)}",
                        )
                    )
        longest = parse_duration(r.grant_max) if r.grant_max is not None else None
        if longest is not None and longest > policy_max:
            c.problems.append(
                main.problem(
                    (*at, "grant_max"),
                    f"{r.grant_max} is longer than overrides.grant_max "
                    f"({spec.overrides.grant_max})",
                )
            )
        out.append(
            Role(
                name=name,
                members=frozenset(r.members),
                groups=None if isinstance(r.groups, str) else frozenset(r.groups),
                services=None if isinstance(r.services, str) else frozenset(r.services),
                grant_max=longest,
                emergencies=r.emergencies,
                review=r.review,
                requests=r.requests,
            )
        )
    return Roles(tuple(out))


def _check_identity(main: SourceFile, spec: PolicyFile, c: _Compiler) -> None:
    """`identity:` names policy groups that exist, and files that do (engine/identity.py)."""
    ident = spec.identity
    for source_group, targets in ident.groups.items():
        for j, target in enumerate(targets):
            if target not in c.group_specs:
                c.problems.append(
                    main.problem(
                        ("identity", "groups", source_group, j),
                        f"unknown group {target!r}{_suggest(target, c.group_specs)}",
                    )
                )
    if ident.radius is not None:
        secret = main.path.parent / ident.radius.secret_file
        if not secret.is_file():
            c.problems.append(
                main.problem(
                    ("identity", "radius", "secret_file"),
                    f"RADIUS secret file {ident.radius.secret_file!r} not found",
                )
            )
    if ident.directory is not None:
        _check_directory_files(main, ident.directory, c)


def _check_directory_files(main: SourceFile, directory: DirectorySpec, c: _Compiler) -> None:
    """The directory's password file and CA file exist (relative to the rules file)."""
    files = [("bind_password_file", directory.bind_password_file)]
    if directory.ca_file is not None:
        files.append(("ca_file", directory.ca_file))
    for name, value in files:
        if not (main.path.parent / value).is_file():
            c.problems.append(
                main.problem(
                    ("identity", "directory", name), f"directory {name} {value!r} not found"
                )
            )
