"""Checking a derainer's number options where it is built, so a bad `--option` fails in
one line before any image is read: an integer option takes only integers, a real one
any finite number, each within its range; bools, text and lists are refused.
"""

import json
import math
from numbers import Integral, Real

from rainbench.models.registry import DerainerError

# The largest radius or patch side a filter takes, px: larger is a typo, and the minimum
# filter would pad every image by that much.
MAX_WINDOW = 10_000


def number_option(
    derainer: str,
    option: str,
    value: object,
    kind: type[int] | type[float],
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    optional: bool = False,
) -> int | float | None:
    """`value` as `kind` when it is a number of that kind in [low, high] ((low, high]
    with `low_open`), or None when `optional`; otherwise DerainerError saying what the
    option takes. `int(2.7)` would be 2 and `float("nan")` passes every comparison, so
    neither is ever converted silently."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        number = None
    elif kind is int:
        number = int(value) if isinstance(value, Integral) else None
    else:
        number = _finite(value)
    if number is not None and not _in_range(number, low, low_open, high):
        number = None
    if number is None:
        what = "an integer" if kind is int else "a finite number"
        what += ", or null" if optional else ""
        bounds = _bounds(low, low_open, high)
        takes = f"{bounds} ({what})" if bounds else what
        raise DerainerError(f"{derainer}: {option} must be {takes}, not {_shown(value)}")
    return number


def _finite(value: Real) -> float | None:
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None


def _in_range(number: float, low: float | None, low_open: bool, high: float | None) -> bool:
    if low is not None and (number <= low if low_open else number < low):
        return False
    return high is None or number <= high


def _bounds(low: float | None, low_open: bool, high: float | None) -> str:
    if low is not None and low_open and high is not None:
        return f"in ({low:g}, {high:g}]"
    parts = []
    if low is not None and low_open:
        parts.append("positive" if low == 0 else f"above {low:g}")
    elif low is not None:
        parts.append(f"at least {low:g}")
    if high is not None:
        parts.append(f"at most {high:g}")
    return " and ".join(parts)


def _shown(value: object) -> str:
    """The value as it was most likely typed (JSON), cut short to stay on one line."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
