"""Modes and verdicts: every benchmark picks its counts and prints its targets the same way.

Each `verdict` line reads `TARGET <name>: <target> | figure <figure> | MET` (or `MISSED`) and is
also kept in `RESULTS`, which `python -m benchmarks --json OUT` writes out.
"""

from __future__ import annotations

import argparse
from typing import TypeVar

__all__ = ["RESULTS", "parse_mode", "pick", "verdict"]

T = TypeVar("T")

RESULTS: list[dict[str, object]] = []


def parse_mode(argv: list[str] | None, description: str) -> argparse.Namespace:
    """Parse `--quick` and `--smoke` (quick with even smaller counts, for CI) into `.mode`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller counts (seconds)")
    parser.add_argument("--smoke", action="store_true", help="smallest counts (CI)")
    args = parser.parse_args(argv)
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    return args


def pick(mode: str, full: T, quick: T, smoke: T) -> T:
    """The count for `mode`."""
    return {"full": full, "quick": quick, "smoke": smoke}[mode]


def verdict(
    bench: str,
    name: str,
    figure: float,
    target: float,
    unit: str,
    *,
    at_least: bool = False,
    digits: int = 2,
) -> bool:
    """Print and record one target: met when `figure <= target` (`>=` with `at_least`)."""
    met = figure >= target if at_least else figure <= target
    sign = ">=" if at_least else "<="
    print(
        f"TARGET {name}: {sign} {target:,.{digits}f} {unit}"
        f" | figure {figure:,.{digits}f} {unit} | {'MET' if met else 'MISSED'}"
    )
    RESULTS.append(
        {
            "bench": bench,
            "name": name,
            "figure": round(figure, 6),
            "target": target,
            "unit": unit,
            "comparison": sign,
            "met": met,
        }
    )
    return met
