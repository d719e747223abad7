"""The one rounding rule for every telemetry float.

Floats are rounded on their shortest decimal representation (`repr`), half up, to three places,
so the result is the same on every platform and never depends on binary float artefacts
(`2.675` becomes `2.680`, where `round(2.675, 2)` would give `2.67`). The result is a `Decimal`
with exactly three places, which msgspec writes as a JSON number showing three decimals
(`0.100`, `1.000`) when the encoder uses `decimal_format="number"`.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["round3", "round3_or_none"]

_QUANTUM = Decimal("0.001")


def round3(value: float | int | Decimal) -> Decimal:
    """Round a telemetry value to three decimals, half up, on its decimal representation.

    Never blocks. Raises `ValueError` for NaN and infinities, which no telemetry field may hold.
    """
    if type(value) is float and value - value == 0.0:  # the common case: a finite float
        return Decimal(repr(value)).quantize(_QUANTUM, ROUND_HALF_UP)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"telemetry value must be finite, got {value}")
        return value.quantize(_QUANTUM, ROUND_HALF_UP)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"telemetry value must be finite, got {value}")
    # Integers and floats both go through their exact shortest text (`repr`), never through
    # binary arithmetic: that is what makes the result identical on every platform.
    return Decimal(repr(value)).quantize(_QUANTUM, ROUND_HALF_UP)


def round3_or_none(value: float | int | Decimal | None) -> Decimal | None:
    """`round3`, passing `None` through unchanged."""
    return None if value is None else round3(value)
