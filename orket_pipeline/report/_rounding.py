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
that decimal, the same on every platform. (Values of 1e16 or more, which readers refuse, keep
msgspec's exponent form.)
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

#: `.5` → `.500`, `.25` → `.250`: the padding of every one- or two-place fraction.
_PADDED: Final = {
    **{b".%d" % a: b".%d00" % a for a in range(10)},
    **{b".%d%d" % (a, b): b".%d%d0" % (a, b) for a in range(10) for b in range(10)},
}
# A short fraction followed by `,"key":`. Inside a JSON string every `"` is escaped, so a `"`
# after a `,` is structural; were it a string's closing quote, the next byte would be one of
# `,}]:`, never a word character. So the `,` is a separator and the fraction ends a number.
_SHORT_BEFORE_KEY: Final = re.compile(rb'(\.\d\d?)(?=,"\w+":)')
# A short fraction before a `}`: a struct's last field, or text inside a string; each such
# candidate (rare) is checked against what precedes it (`_VALUE_START`).
_SHORT_AT_END: Final = re.compile(rb"\.\d\d?(?=})")
# A key's closing quote (preceded by a word character, so not escaped), `:`, integer digits.
_VALUE_START: Final = re.compile(rb'\w":-?\d+\Z')
_LOOK_BACK: Final = 64  # bytes: one key character and the integer part of any float


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


def three_decimals(data: bytes, *, floats_last: bool = True) -> bytes:
    """Pad every float value in compact msgspec JSON `data` to exactly three decimals.

    Floats encoded from `round3`ed values have one to three decimals (`0.1`, `0.25`, `0.125`):
    the short ones are padded (`0.100`, `0.250`). The work runs in C (one split, one map, one
    join; 100,000 runs take a few hundredths of a second), except for short fractions before a
    `}`, each checked in Python: a struct's last field, rare in reports.

    Assumes what `encode_json` gives it: compact JSON whose object keys after a float are word
    characters (every field name is), with no floats in arrays. Integers, strings and floats
    that never went through `round3` (more places, or an exponent) are left as written.
    `floats_last=False` (no object in `data` ends with a float field, as in a report) skips
    the look for floats before a `}`. Never blocks (beyond the CPU work), never raises.
    """
    parts = _SHORT_BEFORE_KEY.split(data)
    if len(parts) > 1:
        parts[1::2] = map(_PADDED.__getitem__, parts[1::2])
        data = b"".join(parts)
    if not floats_last:
        return data
    pieces: list[bytes] = []
    done = 0
    for match in _SHORT_AT_END.finditer(data):
        start = match.start()
        if _VALUE_START.search(data, max(0, start - _LOOK_BACK), start) is not None:
            pieces += (data[done:start], _PADDED[match[0]])
            done = match.end()
    if not pieces:
        return data
    pieces.append(data[done:])
    return b"".join(pieces)


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
