"""The one rounding rule for every telemetry float.

Floats are rounded on their shortest decimal representation (`repr`), half up, to three places,
so the result is the same on every platform and never depends on binary float artefacts
(`1.0005` becomes `1.001`, where `round(1.0005, 3)` gives `1.0` because the binary value is
just below the half). Zero is never signed (`-0.0001` gives `0.000`). The result is a `Decimal`
with exactly three places, which msgspec writes as a JSON number showing three decimals
(`0.100`, `1.000`) when the encoder uses `decimal_format="number"`.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = ["round3", "round3_or_none"]

_QUANTUM = Decimal("0.001")
_ZERO = Decimal("0.000")


def round3(value: float | int | Decimal) -> Decimal:
    """Round a telemetry value to three decimals, half up, on its decimal representation.

    Never blocks. Raises `ValueError` for NaN, infinities and values of 10**24 or more, which
    no telemetry field may hold.
    """
    if type(value) is float and -1e24 < value < 1e24:  # the common case; NaN fails the test
        rounded = Decimal(repr(value)).quantize(_QUANTUM, ROUND_HALF_UP)
        return rounded if rounded else _ZERO
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"telemetry value must be finite, got {value}")
    # Integers and floats both go through their exact shortest text (`repr`), never through
    # binary arithmetic: that is what makes the result identical on every platform.
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        raise ValueError(f"telemetry value must be finite, got {value}")
    try:
        rounded = number.quantize(_QUANTUM, ROUND_HALF_UP)
    except InvalidOperation:
        raise ValueError(f"telemetry value out of range: {value}") from None
    return rounded if rounded else _ZERO


def round3_or_none(value: float | int | Decimal | None) -> Decimal | None:
    """`round3`, passing `None` through unchanged."""
    return None if value is None else round3(value)
