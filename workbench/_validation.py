"""Scalar checks shared by every module that validates user-supplied values.

Each check raises ``ValueError`` with one message shape, ``"{name}={value!r} is not allowed;
use {what is allowed}"``, so a bad value reads the same wherever it is caught. A value that
belongs to a named record (``owner``, such as ``"scenario"``) reads ``"{owner} {name}={value!r}
is not allowed; {name} must be {what is allowed}"``. Checks that no helper here covers build
their error with :func:`not_allowed`, so they keep the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

__all__ = ["check_choice", "check_int", "check_real", "is_int", "is_real", "not_allowed"]


def is_int(value: object) -> bool:
    """True for Python and NumPy integers, False for ``bool``."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for finite Python and NumPy reals (integers included), False for ``bool``."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def not_allowed(name: str, value: object, allowed: str, *, owner: str | None = None) -> ValueError:
    """The ``ValueError`` (to raise) for ``name=value``, saying what is ``allowed`` instead.

    Parameters
    ----------
    name : str
        The argument or field name, as the user spells it.
    value : object
        The rejected value; the message shows its ``repr``.
    allowed : str
        What is allowed, as a noun phrase (``"an integer >= 1"``).
    owner : str or None
        The record ``name`` belongs to (``"scenario"``); it prefixes the message.
    """
    if owner is None:
        return ValueError(f"{name}={value!r} is not allowed; use {allowed}")
    return ValueError(f"{owner} {name}={value!r} is not allowed; {name} must be {allowed}")


def check_int(name: str, value: object, *, minimum: int, owner: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``, else ``ValueError``.

    ``owner`` is passed to :func:`not_allowed`.
    """
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        raise not_allowed(name, value, f"an integer >= {minimum}", owner=owner)
    return int(value)  # type: ignore[call-overload]


def check_real(
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    reason: str | None = None,
    owner: str | None = None,
) -> float:
    """``value`` as a ``float`` if it is finite and within the given bounds, else ``ValueError``.

    ``above`` and ``below`` are strict bounds, ``at_least`` is inclusive. With a lower and an
    upper bound the message gives the interval (``"a number in [0.001, 1)"``), otherwise the
    bounds (``"a finite number > 2"``). ``reason``, if given, follows in parentheses;
    ``owner`` is passed to :func:`not_allowed`.
    """
    ok = is_real(value)
    if above is not None:
        ok = ok and value > above  # type: ignore[operator]
    if at_least is not None:
        ok = ok and value >= at_least  # type: ignore[operator]
    if below is not None:
        ok = ok and value < below  # type: ignore[operator]
    if not ok:
        if below is not None and (above is None) != (at_least is None):
            lower = f"({above:g}" if above is not None else f"[{at_least:g}"
            allowed = f"a number in {lower}, {below:g})"
        else:
            parts = [f"> {above:g}"] if above is not None else []
            parts += [f">= {at_least:g}"] if at_least is not None else []
            parts += [f"< {below:g}"] if below is not None else []
            allowed = " ".join(["a finite number", " and ".join(parts)]).strip()
        if reason is not None:
            allowed += f" ({reason})"
        raise not_allowed(name, value, allowed, owner=owner)
    return float(value)  # type: ignore[arg-type]


def check_choice(
    name: str, value: object, options: Iterable[str], *, owner: str | None = None
) -> str:
    """``value`` if it is one of ``options``, else ``ValueError`` listing them.

    ``owner`` is passed to :func:`not_allowed`.
    """
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise not_allowed(name, value, f"one of {listed}", owner=owner)
    return value
