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

__all__ = ["extract_payload"]

_PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "py3"})
# Linear: nothing after the fence run can fail, so there is nothing to backtrack into. It is
# matched only where `str.find` located a fence run, never tried at every line start, which
# made extraction ~10 us for a short answer.
_FENCE_LINE = re.compile(r"([ \t]*)(`{3,}|~{3,})([^\n]*)$", re.MULTILINE)


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
    blocks = _fenced_blocks(text) if "```" in text or "~~~" in text else None
    if blocks:
        chosen = [b for b in blocks if b.language in _PYTHON_LANGUAGES] or blocks
        payload = "\n".join(b.content for b in chosen)
    elif text[:1].isspace():
        payload = textwrap.dedent(text)
    else:
        payload = text  # its first line is not indented, so there is no common margin
    return payload if payload.strip() else None


def _fence_lines(text: str) -> list[re.Match[str]]:
    """The fence lines of `text`: lines that are only indentation, a fence run and info."""
    lines: list[re.Match[str]] = []
    match = _FENCE_LINE.match
    position = 0
    while (run := _next_fence_run(text, position)) >= 0:
        line = match(text, text.rfind("\n", 0, run) + 1)
        if line is not None and line.start(2) == run:
            lines.append(line)
            position = line.end()
        else:
            position = run + 3
    return lines


def _next_fence_run(text: str, position: int) -> int:
    backticks, tildes = text.find("```", position), text.find("~~~", position)
    if backticks < 0 or 0 <= tildes < backticks:
        return tildes
    return backticks


def _fenced_blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    opening: re.Match[str] | None = None
    for line in _fence_lines(text):
        if opening is None:
            opening = line
        elif _closes(opening, line):
            blocks.append(_block(opening, text[opening.end() + 1 : line.start()]))
            opening = None
    if opening is not None:
        blocks.append(_block(opening, text[opening.end() + 1 :]))
    return blocks


def _closes(opening: re.Match[str], line: re.Match[str]) -> bool:
    fence, candidate = opening.group(2), line.group(2)
    return candidate[0] == fence[0] and len(candidate) >= len(fence) and not line.group(3).strip()


def _block(opening: re.Match[str], content: str) -> _Block:
    info = opening.group(3).strip()
    language = info.split(maxsplit=1)[0].lower().lstrip(".{") if info else ""
    indent = len(opening.group(1))
    if indent:
        content = re.sub(rf"(?m)^[ \t]{{1,{indent}}}", "", content)
    return _Block(language, content.removesuffix("\n"))
