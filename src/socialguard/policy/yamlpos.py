"""Read YAML safely and remember where every value came from, so errors can say file:line.

`yaml.safe_load` forgets positions. Here the file is composed into PyYAML's node tree (which keeps
marks), then built into plain Python values while recording, for every path (`("rules", 3, "who")`),
the line it starts on. YAML 1.1 traps are closed on the way: duplicate keys are an error (PyYAML
silently keeps the last), `7:30` is not the sexagesimal integer 450, and `no`/`off` are not false.

Aliases (`*name`) are refused at their line. Building values from the node tree copies what an
alias points to, so nine lines of nine aliases each ("billion laughs") would expand to 9**9 values
and take the process's memory with them: a rules file reloaded by a running proxy must not be able
to do that. A rules file is read by people auditing it, and a value written out says what it says.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml

from socialguard.errors import Problem

__all__ = ["Located", "PathKey", "load_located"]

PathKey = tuple[str | int, ...]


class AliasRefused(yaml.composer.ComposerError):
    """An alias in a socialguard file: refused where it stands (see the module's docstring)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: decimal-only integers (no `1:30` read as 90) and only
    true/false as booleans (`id: no` or a country code `NO` stays a string, as IT expects); and
    no aliases, so reading a file costs memory in proportion to its size.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(
                None,
                None,
                f"aliases (*{event.anchor}) are not allowed in socialguard files: write the "
                "value out (an alias can expand a small file into billions of values)",
                event.start_mark,
            )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)


@dataclass
class Located:
    """Parsed YAML data plus the 1-based line of every path in it."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (a missing key → its
        parent)."""
        p = tuple(path)
        while p:
            line = self.lines.get(p)
            if line is not None:
                return line
            p = p[:-1]
        return self.lines.get((), None)

    def problem(self, path: PathKey, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: PathKey) -> str:
    """("rules", 3, "who") → `rules[3].who`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_located(text: str, file: str) -> tuple[Located | None, list[Problem]]:
    """Parse one YAML document; syntax errors and duplicate keys come back as Problems."""
    problems: list[Problem] = []
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            located = Located(file, None)
            if node is not None:
                located.data = _build(node, (), loader, located, problems)
                located.lines.setdefault((), node.start_mark.line + 1)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
        return None, [Problem(file, line, "", f"YAML syntax: {what}")]
    except yaml.YAMLError as e:
        return None, [Problem(file, None, "", f"YAML syntax: {e}")]
    return located, problems


def _build(
    node: yaml.Node, path: PathKey, loader: _Loader, located: Located, problems: list[Problem]
) -> Any:
    if isinstance(node, yaml.MappingNode) and node.tag == "tag:yaml.org,2002:map":
        loader.flatten_mapping(node)  # resolve `<<:` merge keys the way safe_load would
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node)
            if not isinstance(key, Hashable):
                problems.append(
                    Problem(
                        located.file,
                        key_node.start_mark.line + 1,
                        _fmt(path),
                        "a key must be a plain value",
                    )
                )
                continue
            sub = (*path, str(key))
            line = key_node.start_mark.line + 1
            if key in out:
                first = located.lines.get(sub)
                problems.append(
                    Problem(
                        located.file,
                        line,
                        _fmt(sub),
                        f"duplicate key {key!s} (first given on line {first})",
                    )
                )
                continue
            located.lines[sub] = line
            out[key] = _build(value_node, sub, loader, located, problems)
        return out
    if isinstance(node, yaml.SequenceNode) and node.tag == "tag:yaml.org,2002:seq":
        items = []
        for i, item in enumerate(node.value):
            sub = (*path, i)
            located.lines[sub] = item.start_mark.line + 1
            items.append(_build(item, sub, loader, located, problems))
        return items
    return _construct(loader, node)


def _construct(loader: _Loader, node: yaml.Node) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except ValueError:
        # a scalar that looks like a timestamp but is not one (2026-13-01): keep its text, so the
        # schema reports it against its field ("is not a date") instead of the loader crashing
        if isinstance(node, yaml.ScalarNode):
            return node.value
        raise


def _fmt(path: PathKey) -> str:
    return format_path(path)
