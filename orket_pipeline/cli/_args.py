"""Argument types shared by the subcommands: each raises `argparse.ArgumentTypeError` with one
line naming what was expected, which argparse turns into exit 2."""

from __future__ import annotations

import argparse

__all__ = ["non_negative_int", "positive_int"]


def positive_int(text: str) -> int:
    """An integer >= 1. Raises `ArgumentTypeError` otherwise."""
    value = _int_or(text, 0)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0. Raises `ArgumentTypeError` otherwise."""
    value = _int_or(text, -1)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, not {text!r}")
    return value


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default
