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
# matched only where a fence run was found, never tried at every line start, which made
# extraction ~10 us for a short answer.
_FENCE_LINE = re.compile(r"([ \t]*)(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)
# A run of three is found by the regex engine's literal search, several times quicker than
# `str.find`'s on a needle of one repeated character (~0.3 against ~0.7 us per 700 characters).
_TICKS = re.compile("```")
_TILDES = re.compile("~~~")
# What `has_payload` asks without building blocks. `\s` is exactly `str.isspace`, which
# `str.split` and `str.strip` use, and no character but these ASCII letters lowers to one of
# them, so `_PYTHON_WORD` right after a fence run is exactly `_language(...)` being a python
# language.
_PYTHON_WORD = r"[^\S\n]*[.{]*[Pp][Yy](?:[Tt][Hh][Oo][Nn])?3?(?=\s|\Z)"
# A fence line (run, group 1; info, 2; its python language if it has one, 3) and the first
# non-blank character after it (group 4, absent where all that follows is blank): when that
# character starts no fence line that closes the block, the block has code. Linear: once
# the run has matched, nothing after it can fail (the parts that can are optional), so a
# long run is never given back one character at a time.
_FENCE_CODE = re.compile(rf"[ \t]*(`{{3,}}|~{{3,}})(({_PYTHON_WORD})?[^\n]*)(?:\n\s*(\S))?")
# Found in every fence line of a python language: its run's last three characters, then its
# info up to the language. Found nowhere, no block is python.
_PYTHON_TICKS = re.compile(f"```{_PYTHON_WORD}")
_PYTHON_TILDES = re.compile(f"~~~{_PYTHON_WORD}")


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
    found = _TICKS.search(text)
    ticks = -1 if found is None else found.start()
    found = _TILDES.search(text) if "~" in text else None
    tildes = -1 if found is None else found.start()
    blocks = _fenced_blocks(text, ticks, tildes) if ticks >= 0 or tildes >= 0 else None
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

    The payload is never built: removing an indentation or joining blocks cannot turn text
    blank or non-blank. A usual answer is decided at its first fence, by one match: a python
    block with code there makes the payload non-blank whatever follows, and so does a block
    with code when no line anywhere can open a python block. Any other answer is scanned
    block by block.

    Args:
        output: the model's answer as generated, or `None` when the generation failed.

    Returns:
        Whether `extract_payload(output)` would return a payload. Linear in the length of
        `output`; never raises.
    """
    if output is None:
        return False
    text = output.replace("\r\n", "\n").replace("\r", "\n") if "\r" in output else output
    found_ticks = _TICKS.search(text)
    found_tildes = _TILDES.search(text) if "~" in text else None
    if found_ticks is None and found_tildes is None:
        return text != "" and not text.isspace()  # no fence: the whole text
    ticks = -1 if found_ticks is None else found_ticks.start()
    tildes = -1 if found_tildes is None else found_tildes.start()
    run = tildes if ticks < 0 or 0 <= tildes < ticks else ticks
    # No run lies before this one, so if its line is a fence line, it opens the first block.
    start = run if run == 0 or text[run - 1] == "\n" else text.rfind("\n", 0, run) + 1
    # Else something but indentation lies before the run: the line is no fence line.
    indented = run == start or (text[run - 1] in " \t" and text[start] in " \t")
    first = _FENCE_CODE.match(text, start) if indented else None
    if first is None:
        return _has_code_after(text, tildes, text.find("\n", run))
    code = first.start(4)
    if code < 0:
        return False  # all that follows the first fence line is blank: one block, empty
    if text[code] not in "`~":  # that block has code
        if first[3] is not None:
            return True  # a python block with code
        if _PYTHON_TICKS.search(text, start) is None and (
            tildes < 0 or _PYTHON_TILDES.search(text, start) is None
        ):
            return True  # no block is python, so every block is the payload
    return _has_code(text, _fence_lines(text, ticks, tildes, first.end(2)), first)


def _has_code_after(text: str, tildes: int, end: int) -> bool:
    """`has_payload` of `text`, whose first fence run is on a line that is no fence line and
    ends at `end` (-1: it is the last line); `tildes` is the first run of tildes, or -1."""
    found = None if end < 0 else _TICKS.search(text, end)
    ticks = -1 if found is None else found.start()
    if 0 <= tildes < end:
        found = _TILDES.search(text, end)
        tildes = -1 if found is None else found.start()
    if end < 0 or (ticks < 0 and tildes < 0):
        return True  # no fence line: the whole text, which holds a run
    return _has_code(text, _fence_lines(text, ticks, tildes, end), None)


def _has_code(text: str, lines: Iterator[re.Match[str]], first: re.Match[str] | None) -> bool:
    """`has_payload` of `text`, which holds a fence run, block by block.

    `first` is the `_FENCE_CODE` match of the first fence line and `lines` the fence lines
    after it, or `first` is `None` and `lines` are all the fence lines. A block has code
    when the first non-blank character after its opening line is not on the line closing
    it; the scan stops at the first python block with code, never looking for its end.
    """
    any_block = first is not None
    any_python = other = False  # `other`: a block in no python language has code
    while True:
        if first is not None:
            python, fence, position = first[3] is not None, first[1], first.start(4)
            if position < 0:  # all that follows is blank: this block is empty and the last
                return other and not (any_python or python)
            # Only blank lines lie between: the next fence line is at `position` if any is.
            line = next(lines, None) if text[position] in "`~" else None
            closed = line is not None and line[2].startswith(fence) and not line[3].strip()
            if closed and line is not None and line.start(2) == position:
                any_python = any_python or python  # an empty block
            elif python:
                return True
            else:
                other = True
                if not closed:
                    for line in lines:  # on to this block's closing line (`_closes`, inline)
                        if line[2].startswith(fence) and not line[3].strip():
                            break
        opening = next(lines, None)
        if opening is None:  # no fence line at all: the whole text, which holds a run
            return other and not any_python if any_block else True
        any_block, first = True, _FENCE_CODE.match(text, opening.start())


def _fence_lines(text: str, ticks: int, tildes: int, position: int = 0) -> Iterator[re.Match[str]]:
    """The fence lines of `text`, in order: lines that are only indentation, a fence run and
    info.

    `ticks` and `tildes` are the next run of each kind, searched again only once passed: a
    kind that is absent is looked for once, not at every fence of the other kind. Each line
    is matched once and each stretch of `text` searched for a newline once, so the scan is
    linear even for one long line full of runs.
    """
    match, rfind, ticks_at, tildes_at = _FENCE_LINE.match, text.rfind, _TICKS.search, _TILDES.search
    newline = tried = -1  # the last newline before `run`; the start of the last line tried
    run = position
    while True:
        if 0 <= ticks < position:
            found = ticks_at(text, position)
            ticks = -1 if found is None else found.start()
        if 0 <= tildes < position:
            found = tildes_at(text, position)
            tildes = -1 if found is None else found.start()
        if ticks < 0 and tildes < 0:
            return
        searched, run = run, tildes if ticks < 0 or 0 <= tildes < ticks else ticks
        if run and text[run - 1] != "\n":
            found_newline = rfind("\n", searched, run)
            newline = found_newline if found_newline >= 0 else newline
        else:
            newline = run - 1
        # No run on this line was looked at before, so a fence line's run is this one.
        line = match(text, newline + 1) if newline + 1 != tried else None
        if line is not None:
            yield line
            position = line.end()
        else:  # not a fence line, whatever run of it is looked at
            tried, position = newline + 1, run + 3


def _fences(text: str, ticks: int, tildes: int) -> list[tuple[re.Match[str], int, int]]:
    """Each fenced block: its opening line and the bounds of its content in `text` (the
    trailing newline included; see `_block`)."""
    fences: list[tuple[re.Match[str], int, int]] = []
    opening: re.Match[str] | None = None
    fence = ""
    for line in _fence_lines(text, ticks, tildes):
        if opening is None:
            opening, fence = line, line[2]
        elif _closes(fence, line):
            fences.append((opening, opening.end() + 1, line.start()))
            opening = None
    if opening is not None:
        fences.append((opening, opening.end() + 1, len(text)))
    return fences


def _fenced_blocks(text: str, ticks: int, tildes: int) -> list[_Block]:
    fences = _fences(text, ticks, tildes)
    return [_block(opening, text[start:end]) for opening, start, end in fences]


def _closes(fence: str, line: re.Match[str]) -> bool:
    """Whether `line` closes a block opened by the run `fence`: runs are of one character, so
    starting with `fence` is being of its character and at least as long."""
    return line[2].startswith(fence) and not line[3].strip()


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
