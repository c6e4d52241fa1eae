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
    try:
        return cls(**data)
    except TypeError as exc:  # wrong types that the dataclass itself rejects
        raise ConfigError(f"{where}: {exc}") from None


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
