"""Parsing an untrusted payload with `ast.parse`, so that nothing it contains can crash us.

`ast.parse` reports most hostile input itself: too many nested brackets or indents as
SyntaxError, NUL bytes and lone surrogates as ValueError, deep right-nesting (`not not ...`,
`- - ...`) as MemoryError ("parser stack overflowed"), and, from Python 3.11, deep left-nesting
(`1+1+...`, `a.b.c...`, `f()()...`) as RecursionError. Python 3.10 converts the parsed tree to
Python objects recursively in C with no depth check, so about 120,000 chained operators kill
the process with a C stack overflow. On 3.10 a payload long enough to hold such a chain is
therefore tokenized first, and refused when one logical line chains more operators than
`MAX_CHAINED_OPERATORS` (the depth that is safe with a 1 MiB C stack).

Warnings the parser emits about the payload (invalid escape sequences...) are suppressed, so the
warnings filters of the host process (`-W error`) cannot change a score.
"""

from __future__ import annotations

import ast
import io
import sys
import threading
import tokenize
import warnings

__all__ = ["MAX_CHAINED_OPERATORS", "parse_expression", "parse_payload"]

MAX_CHAINED_OPERATORS = 10_000

# Binary operators and trailers: the constructs that nest the tree to the left, one level each.
# Comparisons are flat in the tree but are counted anyway; overcounting only errs on the safe side.
_CHAINING = frozenset(
    {"+", "-", "*", "/", "//", "%", "@", "**", "<<", ">>", "&", "|", "^"}
    | {"<", ">", "<=", ">=", "==", "!=", ".", "(", "["}
)
_OPERAND_ENDS = frozenset({")", "]", "}", "..."})
_OPERAND_TYPES = frozenset({tokenize.NAME, tokenize.NUMBER, tokenize.STRING})
_LINE_ENDS = frozenset({tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER})
# warnings.catch_warnings mutates process-wide state; one payload at a time changes it here.
# ast.parse holds the GIL throughout, so the lock costs no parallelism.
_PARSE_LOCK = threading.Lock()


def parse_payload(source: str) -> ast.Module | str:
    """Parse `source` without executing it.

    Returns:
        The module's tree, or the reason it cannot be had, e.g.
        `"unparseable: SyntaxError at line 4"`. Holds the GIL while parsing (about 0.3 ms for
        a 50-line function, seconds for megabytes); never raises for any input.
    """
    refusal = _deep_chain_refusal(source)
    if refusal is not None:
        return refusal
    try:
        with _PARSE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source, filename="<payload>")
    except SyntaxError as exc:  # IndentationError and TabError too
        where = f" at line {exc.lineno}" if exc.lineno else ""
        return f"unparseable: {type(exc).__name__}{where}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"unparseable: {type(exc).__name__}"


def parse_expression(text: str) -> ast.expr | str:
    """Parse one expression (a constraint's annotation); the tree, or why it is not one.

    Never raises; holds the GIL while parsing.
    """
    try:
        with _PARSE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text.strip(), filename="<constraint>", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _deep_chain_refusal(source: str) -> str | None:
    # Every chained operator takes at least two characters ("+1", ".b", "()").
    if sys.version_info >= (3, 11) or len(source) < 2 * MAX_CHAINED_OPERATORS:
        return None
    if "\0" in source:
        return None  # ast.parse refuses NUL bytes before it parses anything
    try:
        longest = _longest_chain(source)
    except (SyntaxError, tokenize.TokenError, ValueError, RecursionError, MemoryError) as exc:
        return f"unparseable: {type(exc).__name__}"
    if longest > MAX_CHAINED_OPERATORS:
        return f"unparseable: over {MAX_CHAINED_OPERATORS} chained operators on one line"
    return None


def _longest_chain(source: str) -> int:
    """An upper bound on how deep one logical line nests the tree to the left.

    Stops counting once the bound passes `MAX_CHAINED_OPERATORS`.
    """
    longest = links = 0
    after_operand = False
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in _LINE_ENDS:
            longest, links, after_operand = max(longest, links), 0, False
        elif token.type not in (tokenize.NL, tokenize.COMMENT):
            if after_operand and token.type == tokenize.OP and token.string in _CHAINING:
                links += 1
                if links > MAX_CHAINED_OPERATORS:
                    return links
            after_operand = token.type in _OPERAND_TYPES or token.string in _OPERAND_ENDS
    return max(longest, links)
