"""One-line checks of settings' types and ranges: a wrong value is a ``ValueError`` that names
the setting and the value, never a ``TypeError`` from a comparison deep inside a fit.

``bool`` is refused where a number is asked for (``True`` is an ``int`` to Python, but
``epochs=True`` is a mistake, not one epoch); numpy scalars are accepted.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["at_least", "boolean", "integer", "non_negative", "number", "positive"]


def _label(name: str, owner: str | None) -> str:
    return name if owner is None else f"{owner} {name}"


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(*, owner: str | None = None, **values) -> None:
    """Each of ``values`` is an integer (any sign); else a one-line ``ValueError``."""
    for name, value in values.items():
        if not _is_integer(value):
            raise ValueError(f"{_label(name, owner)} must be an integer, got {value!r}")


def boolean(*, owner: str | None = None, **values) -> None:
    """Each of ``values`` is ``True`` or ``False`` (a numpy bool too); else a one-line
    ``ValueError`` (a string such as ``"no"`` is refused, not read as true)."""
    for name, value in values.items():
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"{_label(name, owner)} must be True or False, got {value!r}")


def at_least(minimum: int, *, owner: str | None = None, optional=(), **values) -> None:
    """Each of ``values`` is an integer ``>= minimum`` (``None`` allowed for the names in
    ``optional``); else a one-line ``ValueError``."""
    for name, value in values.items():
        if value is None and name in optional:
            continue
        if not _is_integer(value):
            raise ValueError(
                f"{_label(name, owner)} must be an integer >= {minimum}, got {value!r}"
            )
        if value < minimum:
            raise ValueError(f"{_label(name, owner)} must be >= {minimum}, got {value}")


def _real(name: str, value, owner: str | None, what: str) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
        what = f"a number {what}" if what else "a number"
        raise ValueError(f"{_label(name, owner)} must be {what}, got {value!r}")


def number(*, owner: str | None = None, optional=(), **values) -> None:
    """Each of ``values`` is a real number, not NaN (``None`` allowed for the names in
    ``optional``); else a one-line ``ValueError``."""
    for name, value in values.items():
        if not (value is None and name in optional):
            _real(name, value, owner, "")


def positive(*, owner: str | None = None, **values) -> None:
    """Each of ``values`` is a real number ``> 0`` (not NaN); else a one-line ``ValueError``."""
    for name, value in values.items():
        _real(name, value, owner, "> 0")
        if not value > 0:
            raise ValueError(f"{_label(name, owner)} must be > 0, got {value}")


def non_negative(*, owner: str | None = None, **values) -> None:
    """Each of ``values`` is a real number ``>= 0`` (not NaN); else a one-line ``ValueError``."""
    for name, value in values.items():
        _real(name, value, owner, ">= 0")
        if not value >= 0:
            raise ValueError(f"{_label(name, owner)} must be >= 0, got {value}")
