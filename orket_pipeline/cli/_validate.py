"""Placeholder: subcommands registered by this module are being built."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add this module's subcommands to the parser `sub` (an argparse subparsers action)."""
    del sub


def _unused(args: argparse.Namespace) -> int:
    return 2
