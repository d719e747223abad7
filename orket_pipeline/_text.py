"""Text safe to show on one line of a terminal: what a hostile string cannot smuggle through."""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    """`text` with every non-printable character escaped as Python would (`\\x1b`, `\\n`,
    `\\ud800`), so control sequences, line breaks and lone surrogates show as themselves and
    never act on a terminal. Printable non-ASCII text (`é`, `日本`) is kept. Never raises."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
