"""TOML files, ``--set KEY=VALUE`` assignments and flat dotted settings: the plumbing under every config."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    pass

Scalar = str | int | float | bool



def read_toml(path: str | Path, field: str, what: str = "an existing TOML file") -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a ConfigError naming ``field``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(field, str(path), what) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(field, str(path), f"valid TOML ({exc})") from None


def parse_value(text: str) -> Any:
    """A KEY=VALUE value: TOML syntax (numbers, booleans, quoted strings, [lists]), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(items: Iterable[str], field: str = "--set",
                      example: str = "train.epochs=2 or attack.lam=10") -> dict[str, Any]:
    """``["train.epochs=2", "adversaries=[0,2]"]`` -> ``{"train.epochs": 2, "adversaries": [0, 2]}``:
    the one parser of ``--set KEY=VALUE`` (``p2pfl run``, ``sweep``, ``topology show``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(field, item, f"KEY=VALUE, e.g. {example}")
        out[key.strip()] = parse_value(value.strip())
    return out


def flat_settings(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (lists stay lists)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_settings(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _freeze(params: Mapping[str, Any] | None, section: str) -> Mapping[str, Any]:
    """Validate a free-form parameter table (scalars or lists of scalars) and make it read-only."""
    out: dict[str, Any] = {}
    for key, value in dict(params or {}).items():
        if not isinstance(key, str):
            raise ConfigError(section, key, "parameter names must be strings")
        if isinstance(value, list | tuple):
            if not all(isinstance(v, Scalar) for v in value):
                raise ConfigError(f"{section}.{key}", value, "lists may hold only scalars")
            value = tuple(value)
        elif not isinstance(value, Scalar):
            raise ConfigError(f"{section}.{key}", value, "a string, number, boolean or list")
        out[key] = value
    return MappingProxyType(dict(sorted(out.items())))
