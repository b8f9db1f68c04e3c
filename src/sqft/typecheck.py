"""Type checks of config dataclasses against their annotations, so that `max_steps: two` (a recipe typo) is
refused by the config itself, from the CLI, a recipe or Python alike, before any work starts.

Accepted: an int for a float; a list for a tuple and the other way round; `X | None`; `tuple[int, ...]`,
`list[str]`, `dict[...]`, `Any`. A bool is never an int (`cutoff: true` is an error), a float never an int.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from sqft.errors import SqftError

__all__ = ["check_field_types", "describe"]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return isinstance(value, hint) if isinstance(hint, type) else True


def describe(hint: Any) -> str:
    """'an integer', 'a number or null', 'a list of integers' ... for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        named = [describe(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin in (tuple, list):
        return f"a list of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}
    if origin is dict:
        return "a mapping"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_field_types(obj: Any) -> None:
    """SqftError naming the first field of dataclass `obj` whose value does not match its annotation."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints.get(f.name, Any)
        if not _matches(value, hint):
            raise SqftError(f"{f.name}={value!r:.60} must be {describe(hint)}, not {type(value).__name__}")
