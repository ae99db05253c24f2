"""One set of checks for every value a user writes: config fields, filter, attack and topology parameters.

Each check returns the value in its canonical type, or raises :class:`~p2pfl.errors.ConfigError`
naming the field, the value and what is allowed::

    >>> integer("defence.f", 2, lo=0)
    2
    >>> real("attack.lam", 0, lo=0, open_lo=True)
    Traceback (most recent call last):
    ...
    p2pfl.errors.ConfigError: attack.lam: 0 is invalid; greater than 0

``allowed`` overrides the generated description where a field has its own wording
(``'"auto" or a finite number > 0'``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

from .errors import ConfigError


def _bounds(lo: float | None, hi: float | None, open_lo: bool, open_hi: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'greater than' if open_lo else 'at least'} {lo}")
    if hi is not None:
        parts.append(f"{'less than' if open_hi else 'at most'} {hi}")
    return " and ".join(parts)


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """``value`` if it is one of ``allowed`` (strings)."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(field, value, "one of " + ", ".join(allowed))
    return value


def flag(field: str, value: Any) -> bool:
    """A real boolean (``1`` or ``"yes"`` are refused: TOML has true and false)."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "true or false")
    return value


def integer(field: str, value: Any, lo: int | None = None, hi: int | None = None, *,
            allowed: str | None = None) -> int:
    """An integer (not a bool, not a float) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(field, value, allowed or "an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(field, value, allowed or "an integer " + _bounds(lo, hi, False, False))
    return int(value)


def real(field: str, value: Any, lo: float | None = None, hi: float | None = None, *,
         open_lo: bool = False, open_hi: bool = False, allowed: str | None = None) -> float:
    """A finite number (int or float, not a bool) within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ConfigError(field, value, allowed or "a finite number")
    x = float(value)
    if ((lo is not None and (x < lo or (open_lo and x == lo)))
            or (hi is not None and (x > hi or (open_hi and x == hi)))):
        raise ConfigError(field, value, allowed or _bounds(lo, hi, open_lo, open_hi))
    return x


def fraction(field: str, value: Any, *, open_hi: bool = False) -> float:
    """A number in (0, 1] (or (0, 1) with ``open_hi``)."""
    return real(field, value, 0.0, 1.0, open_lo=True, open_hi=open_hi,
                allowed=f"a number in (0, 1{')' if open_hi else ']'}")


def auto_or_positive(field: str, value: Any, auto: str = "auto") -> float | str:
    """``"auto"`` or a finite number > 0."""
    if isinstance(value, str) and value.strip().lower() == auto:
        return auto
    return real(field, value, 0.0, open_lo=True, allowed=f'"{auto}" or a finite number > 0')


def known_keys(section: str, params: Mapping[str, Any], accepted: Iterable[str], owner: str) -> None:
    """Refuse keys of ``params`` that ``owner`` does not take, naming the ones it does."""
    accepted = tuple(accepted)
    for key, value in params.items():
        if key not in accepted:
            takes = "takes no parameters" if not accepted else "takes " + ", ".join(accepted)
            raise ConfigError(f"{section}.{key}", value, f"not a parameter; {owner} {takes}")


__all__ = ["auto_or_positive", "choice", "flag", "fraction", "integer", "known_keys", "real"]
