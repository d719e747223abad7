"""The one rounding rule for every telemetry number, and the three-decimal JSON text.

The rule: round the number's shortest decimal representation (`repr`, the digits Python and
msgspec print for it, identical on every platform) half up (away from zero on a tie, as
`decimal.ROUND_HALF_UP` does) to three places, and return the nearest `float` to that decimal.
So `1.0005` gives `1.001` and `0.1235` gives `0.124`, where `round(x, 3)`, which rounds the
binary value half to even, gives `1.0` and `0.123`: the figure a user sees printed is the
figure that is rounded. `-0.0001` gives `0.0`, never `-0.0`.

Python callers get plain floats (`adherence_score == 0.167` holds). Exactly three decimals is a
property of the JSON text only: `three_decimals` pads each float the encoder wrote (`0.1`) to
three places (`0.100`). For a value rounded here and below 1e12 in magnitude, the shortest repr
is the three-place decimal itself with trailing zeros dropped, so the padded text is exactly
that decimal.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

__all__ = ["round3", "round3_or_none", "three_decimals"]

_QUANTUM: Final = Decimal("0.001")
_LIMIT: Final = 1e24  # beyond this the decimal context (28 digits) cannot hold three places
#: The fast path's range and tie margin. Below 1e9, `x * 1000` and the distance between the
#: binary value and its repr are both within 1.2e-4 of a thousandth, so a scaled fraction more
#: than 1e-3 away from one half rounds the same way on the repr as on the binary value.
_FAST_LIMIT: Final = 1e9
_TIE_MARGIN: Final = 1e-3

# A float token right after a key: inside a JSON string every `"` is escaped, so `"word":`
# with a word-character key can only be a real key, and what follows it a real value token.
_ONE_PLACE: Final = re.compile(rb'("\w+":-?\d+\.\d)(?=[,}])')
_TWO_PLACES: Final = re.compile(rb'("\w+":-?\d+\.\d\d)(?=[,}])')
_OTHER_FLOAT: Final = re.compile(rb'("\w+":)(-?\d+(?:\.\d+)?[eE][-+]?\d+|-?\d+\.\d{4,})(?=[,}])')


def round3(value: float | int | Decimal) -> float:
    """Round a telemetry value to three decimals, half up, on its decimal representation.

    Never blocks. Raises `ValueError` for NaN, infinities and values of 1e24 or more, which
    no telemetry field may hold.
    """
    if type(value) is float and -_FAST_LIMIT < value < _FAST_LIMIT:  # NaN fails the test
        scaled = value * 1000.0
        whole = math.floor(scaled)
        fraction = scaled - whole
        if fraction < 0.5 - _TIE_MARGIN:
            return whole / 1000  # int / int: the float nearest to the decimal, never -0.0
        if fraction > 0.5 + _TIE_MARGIN:
            return (whole + 1) / 1000
    return _round_decimal(value)


def round3_or_none(value: float | int | Decimal | None) -> float | None:
    """`round3`, passing `None` through unchanged."""
    return None if value is None else round3(value)


def three_decimals(data: bytes) -> bytes:
    """Rewrite every float value in compact JSON `data` with exactly three decimals.

    Floats written by msgspec from `round3`ed values have one to three decimals (`0.1`), and
    are padded (`0.100`) by two substitutions that run in C. A float with more places or an
    exponent (a value that never went through `round3`) is rounded by `round3`'s rule on its
    text. Integers and strings are left alone. Never blocks (beyond the CPU work), never raises.
    """
    data = _TWO_PLACES.sub(rb"\g<1>0", _ONE_PLACE.sub(rb"\g<1>00", data))
    if _OTHER_FLOAT.search(data) is None:
        return data
    return _OTHER_FLOAT.sub(_rounded_token, data)


def _rounded_token(match: re.Match[bytes]) -> bytes:
    token = match[2]
    try:
        rounded = Decimal(token.decode()).quantize(_QUANTUM, ROUND_HALF_UP)
    except InvalidOperation:  # too large for three places: keep the number as written
        return match[0]
    return match[1] + f"{rounded if rounded else _QUANTUM * 0:f}".encode()


def _round_decimal(value: float | int | Decimal) -> float:
    # Floats and integers both go through their exact shortest text (`repr`), never through
    # binary arithmetic: that is what makes the result identical on every platform.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"telemetry value must be finite, got {value}")
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        raise ValueError(f"telemetry value must be finite, got {value}")
    if not -_LIMIT < number < _LIMIT:
        raise ValueError(f"telemetry value out of range: {value}")
    try:
        rounded = number.quantize(_QUANTUM, ROUND_HALF_UP)
    except InvalidOperation:
        raise ValueError(f"telemetry value out of range: {value}") from None
    return float(rounded) + 0.0  # + 0.0 turns -0.0 into 0.0
