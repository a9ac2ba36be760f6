"""How `--help` reads: plain text, every default shown, metavars in capitals, no type labels.

Typer's Rich help read its own `[default: GET]` as markup and dropped it on some versions, and
labels every option with its Python type (`<bool>` on a flag, `<list[str]>`); its usage line
braces required arguments (`{url}`) and brackets an optional one already named `[PATH]` twice.
Every group of the command passes `cls=HelpGroup` and `rich_markup_mode=None` (click's plain
formatter, the same on every terminal); the group gives its commands capitalised metavars derived
from the option's name and a usage line as click writes it (`URL`, `[PATH]`).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["HelpGroup"]


class HelpCommand(TyperCommand):
    """A command whose usage line names arguments the way click does: `URL`, `[PATH]`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class PlainArgument(TyperArgument):
    """An argument listed by its metavar alone: the help text says what it is."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class HelpGroup(TyperGroup):
    """A group whose commands (and their options) read as the module docstring says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                command.__class__ = HelpCommand  # same fields, usage line as click writes it
            for param in command.params:
                _plain_metavar(param)


def _plain_metavar(param: Any) -> None:
    """`--client CLIENT`, `--rules PATH`, `ID`: capitals for a value, nothing for a flag."""
    if isinstance(param, TyperArgument):
        raw = param.metavar or param.name or ""
        param.metavar = raw.strip("[]").upper()
        if type(param) is TyperArgument:
            param.__class__ = PlainArgument
    elif isinstance(param, TyperOption) and param.metavar is None and not param.is_flag:
        long = max(param.opts, key=len).lstrip("-")
        param.metavar = long.replace("-", "_").upper()
