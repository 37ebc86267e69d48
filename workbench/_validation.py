"""Scalar checks shared by every module that validates user-supplied values.

Each check raises ``ValueError`` with one message shape, ``"{name}={value!r} is not allowed;
use {what is allowed}"``, so a bad value reads the same wherever it is caught.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

__all__ = ["check_choice", "check_int", "check_real", "is_int", "is_real"]


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, False for ``bool``."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for finite Python and NumPy reals (integers included), False for ``bool``."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``, else ``ValueError``."""
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        raise ValueError(f"{name}={value!r} is not allowed; use an integer >= {minimum}")
    return int(value)  # type: ignore[call-overload]


def check_real(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
) -> float:
    """``value`` as a ``float`` if it is finite and within the given bounds, else ``ValueError``.

    ``above`` and ``below`` are strict bounds, ``at_least`` is inclusive.
    """
    ok = is_real(value)
    parts = []
    if above is not None:
        ok = ok and value > above  # type: ignore[operator]
        parts.append(f"> {above:g}")
    if at_least is not None:
        ok = ok and value >= at_least  # type: ignore[operator]
        parts.append(f">= {at_least:g}")
    if below is not None:
        ok = ok and value < below  # type: ignore[operator]
        parts.append(f"< {below:g}")
    if not ok:
        allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")
        raise ValueError(f"{name}={value!r} is not allowed; use {allowed}")
    return float(value)  # type: ignore[arg-type]


def check_choice(name: str, value: object, options: Iterable[str]) -> str:
    """``value`` if it is one of ``options``, else ``ValueError`` listing them."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name}={value!r} is not allowed; use one of {listed}")
    return value
