"""The code payload of a model's answer: its fenced code blocks, else the whole text.

Fences follow CommonMark where models lean on it: a line of three or more backticks or tildes
opens a block (any indentation, so fences inside list items count), a line of the same
character at least as long, with nothing after it, closes it, and a block left open runs to
the end of the answer. The content of an indented fence loses that indentation. Blocks whose
language is `python`, `py`, `python3` or `py3` are taken when there is one; otherwise every
block is; the chosen blocks are joined by newlines. An answer with no fence is taken whole,
less any indentation common to all its lines.
"""

from __future__ import annotations

import re
import textwrap
from typing import NamedTuple

__all__ = ["extract_payload", "has_payload"]

_PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "py3"})
# Linear: nothing after the fence run can fail, so there is nothing to backtrack into. It is
# matched only where `str.find` located a fence run, never tried at every line start, which
# made extraction ~10 us for a short answer.
_FENCE_LINE = re.compile(r"([ \t]*)(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)
# A run of three is found by the regex engine's literal search, several times quicker than
# `str.find`'s on a needle of one repeated character (~0.3 against ~0.7 us per 700 characters).
_TICKS = re.compile("```")
_TILDES = re.compile("~~~")


class _Block(NamedTuple):
    language: str
    content: str


def extract_payload(output: str | None) -> str | None:
    """The code payload of a model's raw output, or `None` when there is none.

    Args:
        output: the model's answer as generated, or `None` when the generation failed.

    Returns:
        The payload, or `None` when `output` is `None` or the payload is empty or whitespace.
        Never blocks for long (linear in the length of `output`); never raises.
    """
    if output is None:
        return None
    text = output.replace("\r\n", "\n").replace("\r", "\n") if "\r" in output else output
    blocks = _fenced_blocks(text) if _has_fence_run(text) else None
    if blocks:
        chosen = [b for b in blocks if b.language in _PYTHON_LANGUAGES] or blocks
        payload = "\n".join(b.content for b in chosen)
    elif text[:1].isspace():
        payload = textwrap.dedent(text)
    else:
        payload = text  # its first line is not indented, so there is no common margin
    return payload if payload.strip() else None


def has_payload(output: str | None) -> bool:
    """Whether `output` has a code payload: exactly `extract_payload(output) is not None`,
    without building the payload (removing an indentation or joining blocks cannot turn
    text blank or non-blank). Linear in the length of `output`; never raises."""
    if output is None:
        return False
    if "\r" in output:
        return extract_payload(output) is not None  # rare: lines end differently
    if not _has_fence_run(output):
        return not output.isspace() and output != ""
    python = other = False  # whether a chosen block has code, by kind
    any_python = any_block = False
    for opening, start, end in _fences(output):
        any_block = True
        code = not output[start:end].isspace() and start < end
        if _language(opening) in _PYTHON_LANGUAGES:
            any_python = True
            python = python or code
        else:
            other = other or code
    if not any_block:
        return not output.isspace() and output != ""
    return python if any_python else other


def _has_fence_run(text: str) -> bool:
    return _TICKS.search(text) is not None or ("~" in text and _TILDES.search(text) is not None)


def _fence_lines(text: str) -> list[re.Match[str]]:
    """The fence lines of `text`: lines that are only indentation, a fence run and info."""
    lines: list[re.Match[str]] = []
    match, rfind = _FENCE_LINE.match, text.rfind
    # The next run of each kind at or after `position`, searched again only once passed: a
    # kind that is absent is looked for once, not at every fence of the other kind.
    ticks, tildes = _next(_TICKS, text, 0), _next(_TILDES, text, 0) if "~" in text else -1
    while ticks >= 0 or tildes >= 0:
        run = tildes if ticks < 0 or 0 <= tildes < ticks else ticks
        line = match(text, rfind("\n", 0, run) + 1)
        if line is not None and line.start(2) == run:
            lines.append(line)
            position = line.end()
        else:
            position = run + 3
        if 0 <= ticks < position:
            ticks = _next(_TICKS, text, position)
        if 0 <= tildes < position:
            tildes = _next(_TILDES, text, position)
    return lines


def _next(run: re.Pattern[str], text: str, position: int) -> int:
    found = run.search(text, position)
    return -1 if found is None else found.start()


def _fences(text: str) -> list[tuple[re.Match[str], int, int]]:
    """Each fenced block: its opening line and the bounds of its content in `text` (the
    trailing newline included; see `_block`)."""
    fences: list[tuple[re.Match[str], int, int]] = []
    opening: re.Match[str] | None = None
    for line in _fence_lines(text):
        if opening is None:
            opening = line
        elif _closes(opening, line):
            fences.append((opening, opening.end() + 1, line.start()))
            opening = None
    if opening is not None:
        fences.append((opening, opening.end() + 1, len(text)))
    return fences


def _fenced_blocks(text: str) -> list[_Block]:
    return [_block(opening, text[start:end]) for opening, start, end in _fences(text)]


def _closes(opening: re.Match[str], line: re.Match[str]) -> bool:
    fence, candidate = opening.group(2), line.group(2)
    return candidate[0] == fence[0] and len(candidate) >= len(fence) and not line.group(3).strip()


def _language(opening: re.Match[str]) -> str:
    info = opening.group(3)
    if not info or info.isspace():
        return ""
    return info.split(maxsplit=1)[0].lower().lstrip(".{")


def _block(opening: re.Match[str], content: str) -> _Block:
    indent = opening.end(1) - opening.start(1)
    if indent:
        content = re.sub(rf"(?m)^[ \t]{{1,{indent}}}", "", content)
    return _Block(_language(opening), content.removesuffix("\n"))
