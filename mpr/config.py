"""Helpers for frozen config dataclasses and YAML recipes.

Each component owns one frozen dataclass next to its code and validates it in
``__post_init__``. This module only provides the shared plumbing: building a
config from a mapping with unknown keys rejected (never silently dropped),
loading YAML, and turning a config back into plain data to save beside results.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from mpr.errors import ConfigError

C = TypeVar("C")


def from_mapping(cls: type[C], data: Mapping[str, Any] | None, *, where: str = "config") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error, not ignored."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    missing = sorted(f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                     if f.name not in data and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))} for {cls.__name__}")
    check_types(cls, data, where)
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:  # a range or choice its __post_init__ refused: say where it was
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def check_types(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Each value of ``data`` has the type its field of dataclass ``cls`` declares (str, int, float,
    bool, ``X | None``, tuples/lists of them, mappings, nested config dataclasses): ConfigError naming
    the key otherwise. Ranges and choices are each config's own ``__post_init__``."""
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved here: leave it to __post_init__
        return
    for key, value in data.items():
        expected = hints.get(key)
        if expected is not None and not _matches(value, expected):
            raise ConfigError(f"{where}: {key} must be {_describe(expected)}, got {value!r}")


def _matches(value: Any, tp: Any) -> bool:
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args)))
    if origin is dict or tp is dict:
        return isinstance(value, Mapping)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp)
    return True  # anything else: __post_init__ decides


def _describe(tp: Any) -> str:
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if tp is type(None):
        return "null"
    if origin in (tuple, list):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} keys"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-data view of a (possibly nested) config dataclass, for saving beside results."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict; a missing or malformed file is a ConfigError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds; used in __post_init__."""
    if not condition:
        raise ConfigError(message)
