"""`orket-pipeline validate`: score one code file against a constraints file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from .._exceptions import InputError
from .._text import printable
from ..constraints import (
    ConstraintValidator,
    ValidationResult,
    extract_payload,
    load_constraints,
)
from ..report._model import encode_json

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add `validate` to the parser `sub` (an argparse subparsers action)."""
    parser = sub.add_parser(
        "validate",
        help="score a code file against constraints",
        description="Score CODE_FILE against the constraints in RULES.json. Exit 0 when every "
        "check passes, 1 otherwise, 2 on bad input.",
    )
    parser.add_argument(
        "code_file",
        metavar="CODE_FILE",
        help="the code (or, with --extract, a model's raw answer) to score",
    )
    parser.add_argument(
        "--constraints", required=True, metavar="RULES.json", help="a JSON object of constraints"
    )
    parser.add_argument(
        "--extract",
        action="store_true",
        help="take the fenced code blocks of a model answer, as the pipeline does",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    rules_text = _read(args.constraints)
    try:
        rules = msgspec.json.decode(rules_text)
    except msgspec.DecodeError as exc:
        raise InputError(f"{args.constraints}: invalid JSON: {exc}") from None
    validator = ConstraintValidator(load_constraints(rules, where=args.constraints))
    code = _read(args.code_file)
    result = validator.validate(extract_payload(code) if args.extract else code)
    if args.json:
        sys.stdout.write(encode_json(result).decode() + "\n")  # the score with three decimals
    else:
        _print_table(result)
    every_check_passed = result.adherence_score is not None
    return 0 if every_check_passed and result.passed_checks == result.total_checks else 1


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _print_table(result: ValidationResult) -> None:
    for check in result.checks:
        status = "PASS" if check.passed else "FAIL"
        reason = f"  ({check.reason})" if check.reason else ""
        print(printable(f"{status}  {check.rule}{reason}"))  # a rule is the user's own text
    if result.adherence_score is None:
        print("adherence: none (no code payload)")
    else:
        print(
            f"adherence: {result.adherence_score:.3f} "
            f"({result.passed_checks}/{result.total_checks} checks passed)"
        )
