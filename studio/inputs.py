"""Checks on the values users type or pick in the studio: one validator per kind, one message style.

Every handler passes its raw UI values through these before touching the model; a bad value becomes a
StudioError naming the field and the accepted range, shown in the page as is.
"""

from __future__ import annotations

import math
import re


class StudioError(ValueError):
    """A request the studio cannot serve; the text is shown to the user as is."""


def number(value, what: str, lo: float, hi: float, *, integer: bool = False, default=None):
    """A user-typed number checked once for every handler: blank -> `default` (or a message), not a number,
    NaN / infinite or outside [lo, hi] -> StudioError naming the field and the range."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise StudioError(f"give the {what}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{what} must be a number, got {value!r}") from None
    if not (math.isfinite(f) and lo <= f <= hi):
        raise StudioError(f"{what} must be in {lo:g} .. {hi:g}, got {value!r}")
    if integer:
        if not f.is_integer():
            raise StudioError(f"{what} must be a whole number, got {value!r}")
        return int(f)
    return f


def seed_number(value, what: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{what} must be a whole number, got {value!r}") from None
    if not f.is_integer() or not 0 <= f < 2**31:
        raise StudioError(f"{what} must be a whole number in 0 .. {2**31 - 1}, got {value!r}")
    return int(f)


def parse_seeds(text: str, what: str = "seeds", limit: int = 16) -> list[int]:
    """'0, 3, 5-8' -> [0, 3, 5, 6, 7, 8]."""
    out: list[int] = []
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a or b - a > limit:
                raise StudioError(f"bad {what} range {part!r}")
            out += list(range(a, b + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise StudioError(f"{what}: {part!r} is not a whole number or a range like 3-6")
    if not out:
        raise StudioError(f"give at least one of the {what}")
    if len(out) > limit:
        raise StudioError(f"at most {limit} {what}")
    return [seed_number(s, what) for s in out]
