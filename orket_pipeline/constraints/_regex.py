"""Time-bounded regex search: RE2 where it means the same as Python's `re`, else `regex`.

Every pattern is checked and compiled by the `regex` module (Python `re` syntax, version 0
semantics), which is what a pattern means. A pattern that only uses constructs RE2 agrees on is
also compiled by RE2 and searched there: linear time, so its result never depends on how fast
the machine is. Everything else (backreferences, lookaround, `$`, `\\s`, inline flags,
non-ASCII patterns) is searched by `regex` with a timeout, and reports a timeout instead of
an answer. `\\w \\W \\d \\D \\b \\B` mean the same in both engines only on ASCII text, so a
pattern using them goes to RE2 only when the text is ASCII.
"""

from __future__ import annotations

import enum
from typing import Any

import re2
import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs unless types-regex

__all__ = ["PatternError", "SearchPattern", "compile_pattern"]

BUDGET_S = 1.0
"""The time budget of one regex check on the `regex` engine."""

_ASCII_CLASS_ESCAPES = frozenset("bBdDwW")
# Escapes with one meaning in both engines, whatever the text.
_SAME_LETTER_ESCAPES = frozenset("Afnrtv")


class PatternError(ValueError):
    """A pattern the `regex` module rejects; the message is its diagnosis."""


class _Re2Use(enum.Enum):
    NEVER = 0
    ASCII_TEXT = 1
    ALWAYS = 2


class SearchPattern:
    """One compiled pattern. Thread-safe: both engines' compiled patterns are immutable."""

    __slots__ = ("_fallback", "_re2", "_re2_use", "pattern")

    def __init__(self, pattern: str, fallback: regex.Pattern[str], re2_use: _Re2Use) -> None:
        self.pattern = pattern
        self._fallback = fallback
        self._re2_use = re2_use
        self._re2 = _re2_compile(pattern) if re2_use is not _Re2Use.NEVER else None
        if self._re2 is None:
            self._re2_use = _Re2Use.NEVER

    @property
    def linear_time(self) -> bool:
        """Whether ASCII text is searched by RE2 (so never times out)."""
        return self._re2_use is not _Re2Use.NEVER

    def search(self, text: str, *, text_is_ascii: bool) -> bool | None:
        """Whether the pattern matches anywhere in `text`; `None` when it ran out of time.

        Blocks for at most about `BUDGET_S` on the `regex` engine; RE2 is linear in the text.
        `text` must be encodable as UTF-8 (no lone surrogates). Never raises.
        """
        if self._re2 is not None and (text_is_ascii or self._re2_use is _Re2Use.ALWAYS):
            return self._re2.search(text) is not None
        try:
            return self._fallback.search(text, timeout=BUDGET_S) is not None
        except TimeoutError:
            return None


def compile_pattern(pattern: str) -> SearchPattern:
    """Compile `pattern` for `SearchPattern.search`.

    Never blocks for long. Raises:
        PatternError: `regex` rejects the pattern.
    """
    try:
        fallback = regex.compile(pattern, regex.VERSION0)
    except regex.error as exc:
        raise PatternError(str(exc)) from None
    except (OverflowError, RecursionError, MemoryError) as exc:
        raise PatternError(f"{type(exc).__name__} while compiling") from None
    return SearchPattern(pattern, fallback, _re2_use(pattern))


def _re2_compile(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every rejected pattern on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def _re2_use(pattern: str) -> _Re2Use:
    """Conservatively, where RE2 finds a match exactly when Python's `re` would."""
    if not pattern.isascii() or any(s in pattern for s in ("$", "[:", "{,")):
        return _Re2Use.NEVER
    if "(?" in pattern.replace("(?:", ""):
        return _Re2Use.NEVER  # inline flags, lookaround, named groups: not worth the doubt
    use = _Re2Use.ALWAYS
    i = pattern.find("\\")
    while i != -1 and i + 1 < len(pattern):
        escaped = pattern[i + 1]
        if escaped in _ASCII_CLASS_ESCAPES:
            use = _Re2Use.ASCII_TEXT
        elif escaped.isalnum() and escaped not in _SAME_LETTER_ESCAPES:
            return _Re2Use.NEVER  # \s, \Z, \x41, \1, \p{L}...: spelt or meant differently
        i = pattern.find("\\", i + 2)
    return use
