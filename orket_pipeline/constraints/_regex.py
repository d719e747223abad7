"""Time-bounded regex search: RE2 where it means the same as Python's `re`, else `regex`.

Every pattern is checked and compiled by the `regex` module (Python `re` syntax, version 0
semantics), which is what a pattern means. A pattern that only uses constructs RE2 agrees on is
also compiled by RE2 and searched there: linear time, so its result never depends on how fast
the machine is. Everything else (backreferences, lookaround, `$`, `\\s`, inline flags,
non-ASCII patterns) is searched by `regex` with a timeout, and reports a timeout instead of
an answer. `\\w \\W \\d \\D \\b \\B` mean the same in both engines only on ASCII text, so a
pattern using them goes to RE2 only when the text is ASCII.

Compiling is bounded too: `regex` expands counted repeats (`(a{100}){100}` compiles 10,000
copies of `a`), so nested counts can ask for gigabytes (`((((a{100}){100}){100}){100})`). Before
compiling, the expanded size is estimated from the pattern's text, and a pattern over
`MAX_EXPANDED_SIZE` is refused as too large; RE2 compiles within its own `max_mem`.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import re2
import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs unless types-regex

__all__ = ["PatternError", "SearchPattern", "compile_pattern"]

BUDGET_S = 1.0
"""The time budget of one regex check on the `regex` engine."""

MAX_EXPANDED_SIZE = 50_000
"""The most pattern items, counted repeats expanded, that a pattern may compile to (about
35 MB and 0.05 s for `regex` at the limit)."""

_RE2_MAX_MEM = 8 << 20
_BRACED_ESCAPES = frozenset("pPNxuUg")  # \\p{L}, \\N{name}, \\x{41}: braces not a count
_QUANTIFIER = re.compile(r"\{(\d*)(?:,(\d*))?\}")

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

    Never blocks for long: a pattern whose counted repeats expand past `MAX_EXPANDED_SIZE`
    items is refused before it is compiled.

    Raises:
        PatternError: `regex` rejects the pattern, or it is too large to compile.
    """
    size = expanded_size(pattern)
    if size > MAX_EXPANDED_SIZE:
        raise PatternError(
            f"too large: its counted repeats expand to more than {MAX_EXPANDED_SIZE:,} items"
        )
    try:
        fallback = regex.compile(pattern, regex.VERSION0)
    except regex.error as exc:
        raise PatternError(str(exc)) from None
    except (OverflowError, RecursionError, MemoryError) as exc:
        raise PatternError(f"{type(exc).__name__} while compiling") from None
    return SearchPattern(pattern, fallback, _re2_use(pattern))


def _re2_compile(pattern: str) -> Any:
    options = re2.Options()
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # RE2 would print every rejected pattern on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


def expanded_size(pattern: str) -> int:
    """An upper estimate of how many items `pattern` compiles to with its counted repeats
    expanded: every atom counts 1, a group the sum of its contents plus 1, and `X{m}`,
    `X{m,}` or `X{m,n}` the size of `X` times `m + 1` (`regex` expands the minimum count; the
    rest is a loop). Stops counting once past `MAX_EXPANDED_SIZE`. Never raises.
    """
    over = MAX_EXPANDED_SIZE + 1
    groups = [0]  # the size so far of each open group, outermost first
    last = 0  # the size of the last atom, which a quantifier repeats
    i = 0
    while i < len(pattern):
        char = pattern[i]
        quantifier = _QUANTIFIER.match(pattern, i) if char == "{" else None
        if char == "(":
            groups.append(1)
            i += 1
        elif char == ")" and len(groups) > 1:
            last = groups.pop()
            groups[-1] += last
            i += 1
        elif quantifier is not None and (quantifier[1] or quantifier[2]):
            count = min(int(quantifier[1] or 0), over)
            groups[-1] += last * count
            last = min(last * (count + 1), over)
            i = quantifier.end()
        elif char in "*+?|":
            i += 1
        else:
            i = _atom_end(pattern, i)
            last = 1
            groups[-1] += 1
        if groups[-1] > MAX_EXPANDED_SIZE:
            return over
    return sum(groups)


def _atom_end(pattern: str, i: int) -> int:
    """Where the atom starting at `i` (a character, an escape or a class) ends."""
    if pattern[i] == "\\":
        end = i + 2
        if pattern[i + 1 : i + 2] in _BRACED_ESCAPES and pattern[end : end + 1] == "{":
            close = pattern.find("}", end)
            return len(pattern) if close == -1 else close + 1
        return end
    if pattern[i] == "[":
        j = i + 1
        j += pattern[j : j + 1] == "^"
        j += pattern[j : j + 1] == "]"  # a `]` first in a class is itself
        while j < len(pattern) and pattern[j] != "]":
            j += 2 if pattern[j] == "\\" else 1
        return j + 1
    return i + 1


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
