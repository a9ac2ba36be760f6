"""`load_policy(path)`: read, validate and compile a rules file and its includes.

Every problem is reported with file, line and field (`rules/policy.yaml:42: rules[3].who: unknown
group 'staf' (did you mean 'staff'?)`) and all of them at once, in one PolicyError. Nothing here
touches the network or the clock; the only I/O is reading the rules file, its includes, its domain
lists and device inventories.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from socialguard.engine.compiled import CompiledPolicy
from socialguard.errors import PolicyError, Problem

from . import schema
from .compile import SourceFile, compile_policy
from .yamlpos import Located, PathKey, load_located

__all__ = ["load_policy"]


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """The schema model that the mapping at `path` is validated against (for key suggestions)."""
    model: type[BaseModel] = schema.PolicyFile
    i = 0
    while i < len(path):
        info = model.model_fields.get(str(path[i]))
        if info is None:
            return None
        target: Any = info.annotation
        i += 1
        while get_origin(target) in (list, dict) or get_origin(target) in (UnionType, Union):
            args = [a for a in get_args(target) if a is not type(None)]
            if get_origin(target) in (list, dict):
                i += 1  # the index or the key
            target = args[-1]
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return None
        model = target
    return model


def load_policy(path: Path) -> CompiledPolicy:
    """Load and compile the rules file at `path`; raises PolicyError listing every problem."""
    path = Path(path)
    problems: list[Problem] = []
    main = _read(path, str(path), schema.PolicyFile, problems)
    if main is None:
        # Schema errors: look again with the failing entries replaced, so that reference errors
        # elsewhere in the file (an unknown group, say) come out in the same run.
        salvaged = _salvage(path, str(path))
        if salvaged is not None:
            stand_in, replaced = salvaged
            more: list[Problem] = []
            _compile(path, stand_in, more)
            problems.extend(p for p in more if not _within(p, stand_in.shown, replaced))
        raise PolicyError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    policy = _compile(path, main, problems)
    if policy is None:
        raise PolicyError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return policy


def _compile(path: Path, main: SourceFile, problems: list[Problem]) -> CompiledPolicy | None:
    """Read the includes of `main` and compile; every problem is appended to `problems`."""
    assert isinstance(main.spec, schema.PolicyFile)
    includes: list[SourceFile] = []
    for i, rel in enumerate(main.spec.include):
        inc_path = path.parent / rel
        shown = str(Path(main.shown).parent / rel)
        if not inc_path.is_file():
            problems.append(
                main.problem(
                    ("include", i), f"included file {rel!r} not found (looked for {shown})"
                )
            )
            continue
        inc = _read(inc_path, shown, schema.IncludeFile, problems)
        if inc is not None:
            includes.append(inc)
    if problems:
        return None
    policy, found = compile_policy(main, includes)
    problems.extend(found)
    return policy


def _within(problem: Problem, file: str, prefixes: set[str]) -> bool:
    """Whether `problem` is about one of the replaced entries (its placeholder, not the file)."""
    if problem.file != file:
        return False
    return any(
        problem.field == pre or problem.field.startswith((pre + ".", pre + "[")) for pre in prefixes
    )


# Placeholders for entries of the rules file that failed the schema, so that the rest of the file
# can still be compiled and its reference errors reported in the same run. Each is the smallest
# valid entry of its kind; rules keep their id (tests may name it) and are switched off.
_PLACEHOLDER_SECTIONS = ("groups", "categories", "schedules", "services")
_PLACEHOLDER_TEST = {"url": "http://placeholder.invalid/", "client": "127.0.0.1",
                     "at": "2026-01-01T00:00:00+00:00", "expect": "allow"}  # fmt: skip
# Top-level settings with a default: one that fails the schema is dropped for the second look.
_OPTIONAL_SETTINGS = ("default", "fail", "ip_literals", "blocked_connections", "overrides",
                      "logging", "auth")  # fmt: skip


def _salvage(path: Path, shown: str) -> tuple[SourceFile, set[str]] | None:
    """The rules file with each entry that failed the schema replaced by a placeholder, and the
    field prefixes of the replaced entries.

    None when the file cannot be salvaged (unreadable, not YAML, or an error in the district or
    another part every other part depends on): then the schema errors are all there is to say.
    """
    try:
        located, found = load_located(path.read_text(encoding="utf-8"), shown)
    except (OSError, UnicodeDecodeError):
        return None
    if located is None or found or not isinstance(located.data, dict):
        return None
    data: dict[str, Any] = copy.deepcopy(located.data)
    try:
        schema.PolicyFile.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
    else:
        return None
    replaced: set[str] = set()
    for err in errors:
        prefix = _put_placeholder(data, _real_path(err["loc"], located, err["type"]))
        if prefix is None:
            return None
        replaced.add(prefix)
    try:
        spec = schema.PolicyFile.model_validate(data)
    except ValidationError:
        return None
    return SourceFile(path, located, spec), replaced


def _put_placeholder(data: dict[str, Any], loc: PathKey) -> str | None:
    """Replaces the entry at `loc` in place; returns its field prefix, or None if it cannot."""
    section = loc[0] if loc else None
    entry = loc[1] if len(loc) >= 2 else None
    if section == "rules" and isinstance(entry, int):
        old = data["rules"][entry]
        rid = old.get("id") if isinstance(old, dict) else None
        data["rules"][entry] = {
            "id": rid if isinstance(rid, str) else f"invalid-rule-{entry}",
            "description": "failed the schema",
            "action": "block",
            "enabled": False,
        }
        return f"rules[{entry}]"
    if section == "tests" and isinstance(entry, int):
        data["tests"][entry] = dict(_PLACEHOLDER_TEST)
        return f"tests[{entry}]"
    if section in _PLACEHOLDER_SECTIONS and isinstance(entry, str):
        data[section][entry] = {}
        return f"{section}.{entry}"
    if section in _OPTIONAL_SETTINGS and isinstance(section, str):
        data.pop(section, None)
        return section
    return None


def _read(
    path: Path, shown: str, model: type[BaseModel], problems: list[Problem]
) -> SourceFile | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(Problem(shown, None, "", "file not found"))
        return None
    except (OSError, UnicodeDecodeError) as e:
        problems.append(
            Problem(shown, None, "", f"cannot read: {getattr(e, 'strerror', None) or e}")
        )
        return None
    located, found = load_located(text, shown)
    problems.extend(found)
    if located is None or found:
        return None
    if not isinstance(located.data, dict):
        problems.append(
            Problem(
                shown,
                located.line_of(()),
                "",
                "expected a mapping of sections (district:, rules:, ...)",
            )
        )
        return None
    try:
        spec = model.model_validate(located.data)
    except ValidationError as e:
        problems.extend(_validation_problems(e, located))
        return None
    return SourceFile(path, located, spec)  # type: ignore[arg-type]


def _validation_problems(error: ValidationError, located: Located) -> list[Problem]:
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for e in error.errors():
        path = _real_path(e["loc"], located, e["type"])
        message = _message(e, path)
        problem = located.problem(path, message)
        key = (problem.field, message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def _real_path(loc: tuple[Any, ...], located: Located, kind: str) -> PathKey:
    """pydantic's loc minus the union-member names it inserts (`str`, `ListRef`, `function-
    after[...]`)."""
    path: list[str | int] = []
    for i, part in enumerate(loc):
        el: str | int = part if isinstance(part, int) else str(part)
        candidate = (*path, el)
        named_here = i == len(loc) - 1 and kind in ("missing", "extra_forbidden")
        if candidate in located.lines or named_here or isinstance(el, int):
            path.append(el)
    return tuple(path)


def _message(e: Any, path: PathKey) -> str:
    kind = e["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        model = _model_at(path[:-1])
        known = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return "required, but missing"
    msg = str(e["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    given = e.get("input")
    shown = repr(given)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{msg[0].lower()}{msg[1:]} (got {shown})"
