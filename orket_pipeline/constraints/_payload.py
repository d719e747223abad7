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
from collections.abc import Iterator
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
# Matches exactly the characters for which `str.isspace` is false.
_NON_SPACE = re.compile(r"\S")
# A fence line whose language (see `_language`) is a python one, through the first non-blank
# character after it: the exact test, as one match, of whether a python block has code when
# that character starts no fence line. No character but these ASCII letters lowers to one of
# them, and `\s` is `str.isspace`, as `str.split` uses. Linear: each part after the fence run
# starts with a character that the part before it cannot end with, bar the last line.
_PYTHON_CODE = re.compile(
    r"[ \t]*(?:`{3,}|~{3,})[^\S\n]*[.{]*[Pp][Yy](?:[Tt][Hh][Oo][Nn])?3?(?=\s|\Z)[^\n]*\n\s*\S"
)


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
    """Whether `output` has a code payload: exactly `extract_payload(output) is not None`.

    The payload is never built (removing an indentation or joining blocks cannot turn text
    blank or non-blank). A python block with code makes the payload non-blank whatever
    follows, so the usual answer, whose first fence opens a python block with code, is
    decided there by one match (see `_PYTHON_CODE`); any other answer is scanned.

    Args:
        output: the model's answer as generated, or `None` when the generation failed.

    Returns:
        Whether `extract_payload(output)` would return a payload. Linear in the length of
        `output`; never raises.
    """
    if output is None:
        return False
    text = output.replace("\r\n", "\n").replace("\r", "\n") if "\r" in output else output
    run = _TICKS.search(text)
    if run is None:
        if "~" not in text or _TILDES.search(text) is None:
            return text != "" and not text.isspace()  # no fence: the whole text
    elif "~" not in text or text.find("~", 0, run.start()) < 0:
        # No run before this one, so a fence line here is the first: it opens the first block.
        first = _PYTHON_CODE.match(text, text.rfind("\n", 0, run.start()) + 1)
        if first is not None and text[first.end() - 1] not in "`~":
            return True  # its first non-blank character starts no fence line: code
    return _scan_for_payload(text)


def _scan_for_payload(text: str) -> bool:
    """`has_payload` of a text whose lines end in newlines only, block by block: it stops at
    the first python block with code, telling whether a block has code by its first
    non-blank character, without finding its closing fence."""
    lines = _fence_lines(text)
    any_block = any_python = other = False  # `other`: a block in no python language has code
    for opening in lines:
        any_block = True
        python = _language(opening) in _PYTHON_LANGUAGES
        code = _NON_SPACE.search(text, opening.end() + 1)
        if code is None:  # the rest is blank: this block is empty and the last
            return other and not (any_python or python)
        if _closes_at(text, opening, code.start()):
            next(lines)  # that closing line: only blank lines lie between
            any_python = any_python or python
        elif python:
            return True
        else:
            other = True
            for line in lines:  # on to this block's closing line
                if _closes(opening, line):
                    break
    if not any_block:
        return text != "" and not text.isspace()
    return other and not any_python


def _has_fence_run(text: str) -> bool:
    return _TICKS.search(text) is not None or ("~" in text and _TILDES.search(text) is not None)


def _fence_lines(text: str) -> Iterator[re.Match[str]]:
    """The fence lines of `text`, in order: lines that are only indentation, a fence run and
    info. Each line is matched at most once and each stretch of `text` searched for a newline
    once, so the scan is linear even for one long line full of fence runs."""
    match, rfind = _FENCE_LINE.match, text.rfind
    # The next run of each kind at or after `position`, searched again only once passed: a
    # kind that is absent is looked for once, not at every fence of the other kind.
    ticks, tildes = _next(_TICKS, text, 0), _next(_TILDES, text, 0) if "~" in text else -1
    newline = tried = -1  # the last newline before `run`; the start of the last line tried
    run = 0
    while ticks >= 0 or tildes >= 0:
        searched, run = run, tildes if ticks < 0 or 0 <= tildes < ticks else ticks
        newline = max(newline, rfind("\n", searched, run))
        line = match(text, newline + 1) if newline + 1 != tried else None
        if line is not None and line.start(2) == run:
            yield line
            position = line.end()
        else:  # not a fence line, nor is any later run on this line one
            tried, position = newline + 1, run + 3
        if 0 <= ticks < position:
            ticks = _next(_TICKS, text, position)
        if 0 <= tildes < position:
            tildes = _next(_TILDES, text, position)


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


def _closes_at(text: str, opening: re.Match[str], position: int) -> bool:
    """Whether the line holding `position` closes `opening`; `position` is the first non-blank
    character after `opening`'s line, so a fence line there starts its run at `position`."""
    if text[position] != opening.group(2)[0]:
        return False
    line = _FENCE_LINE.match(text, text.rfind("\n", 0, position) + 1)
    return line is not None and line.start(2) == position and _closes(opening, line)


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
