"""`run --sandbox auto|bwrap|process` and `run --gate-concurrency N`: where and how many gates run.

Kept apart from `_run` so that the options and their checks read in one place.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._exceptions import InputError
from ..engine import Suite
from ..engine.sandbox import SANDBOX_KINDS, resolve_sandbox
from ._args import positive_int

__all__ = ["add_gate_options", "gate_options"]


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """Add `--sandbox` and `--gate-concurrency` to `parser`. Never blocks or raises."""
    parser.add_argument(
        "--sandbox",
        choices=SANDBOX_KINDS,
        default="auto",
        help="where gates run: bwrap (isolated; auto picks it) or process (NOT isolated)",
    )
    parser.add_argument(
        "--gate-concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="gates running at once (default: as many as runs in flight)",
    )


def gate_options(args: argparse.Namespace, suite: Suite) -> dict[str, Any]:
    """The `execute` options for the gates of `suite`.

    Blocks for a trial run of the sandbox (once per process), only when the suite has gates.

    Raises:
        InputError: the suite has gates and no sandbox of the kind asked for is available
            (`run --demo` on its own suite falls back to the process sandbox instead).
    """
    sandbox = None
    if any(task.gate is not None for task in suite.tasks):
        try:
            sandbox = resolve_sandbox(args.sandbox)
        except InputError:
            if not (getattr(args, "demo", False) and args.suite is None and args.sandbox == "auto"):
                raise
            # The bundled demo's answers are a recording we ship, not a model's: safe unisolated.
            sandbox = resolve_sandbox("process")
    return {"sandbox": sandbox, "gate_concurrency": args.gate_concurrency}
