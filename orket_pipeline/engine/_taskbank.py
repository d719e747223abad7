"""Orket task-bank files: a top-level JSON array of Orket benchmark tasks, loaded as a suite.

Each task has an `id` (string or integer), a `problem` and/or an `instruction`, optionally a
`function_signature`, a list of textual `constraints`, an `evaluation` (a `function_examples` or
`cli_examples` gate, extra Orket fields ignored) and an `acceptance_contract` whose
`quality_required_keywords` / `quality_forbidden_keywords` become literal, case-insensitive
regex checks (Orket compares keywords case-insensitively). The function signature becomes one
AST rule: its name, argument count and return annotation.

The prompt is the problem, the instruction, the signature and the textual constraints, in that
order, separated by blank lines.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Final

from .._exceptions import SuiteError
from ._suite import Task, convert_constraints, convert_gate, task_where

__all__ = ["bank_tasks", "signature_rule"]

_EXAMPLE_FIELDS: Final = {
    "function_examples": ("args", "kwargs", "expected"),
    "cli_examples": ("args", "stdin", "expected_stdout", "expected_stderr", "expected_exit_code"),
}


def bank_tasks(document: list[Any], name: str) -> list[Task]:
    """Convert the tasks of a task-bank file called `name`. Raises `SuiteError`."""
    if not document:
        raise SuiteError(f"{name}: the task bank has no tasks")
    return [_bank_task(obj, index, name) for index, obj in enumerate(document)]


def _bank_task(obj: Any, index: int, name: str) -> Task:
    where = task_where(name, obj, index)
    if not isinstance(obj, dict):
        raise SuiteError(f"{where}: expected an object")
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        raise SuiteError(f"{where}: field `id`: expected a non-empty string or an integer")
    signature = _text(obj, "function_signature", where)
    prompt = _prompt(obj, signature, where)
    constraints = convert_constraints(_constraints(obj, signature, where), where)
    gate = convert_gate(_gate(obj.get("evaluation"), signature, where), where, "evaluation")
    return Task(id=str(raw_id), prompt=prompt, constraints=constraints, gate=gate)


def _text(obj: dict[str, Any], field: str, where: str) -> str:
    value = obj.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SuiteError(f"{where}: field `{field}`: expected a string")
    return value.strip()


def _prompt(obj: dict[str, Any], signature: str, where: str) -> str:
    parts = [_text(obj, "problem", where), _text(obj, "instruction", where)]
    if not any(parts):
        raise SuiteError(f"{where}: field `problem`: a task needs a problem or an instruction")
    if signature:
        parts.append(f"Function signature: {signature}")
    notes = obj.get("constraints") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise SuiteError(f"{where}: field `constraints`: expected an array of strings")
    if notes:
        parts.append("Constraints:\n" + "\n".join(f"- {n.strip()}" for n in notes if n.strip()))
    return "\n\n".join(p for p in parts if p)


def _constraints(obj: dict[str, Any], signature: str, where: str) -> dict[str, Any] | None:
    contract = obj.get("acceptance_contract") or {}
    if not isinstance(contract, dict):
        raise SuiteError(f"{where}: field `acceptance_contract`: expected an object")
    rules: dict[str, Any] = {}
    for field, key in (
        ("quality_required_keywords", "regex_required"),
        ("quality_forbidden_keywords", "regex_forbidden"),
    ):
        words = contract.get(field) or []
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise SuiteError(f"{where}: field `acceptance_contract.{field}`: expected strings")
        patterns = ["(?i)" + re.escape(w.strip()) for w in words if w.strip()]
        if patterns:
            rules[key] = patterns
    if signature:
        rules["ast_rules"] = [signature_rule(signature, where)]
    return rules or None


def signature_rule(signature: str, where: str) -> dict[str, Any]:
    """The AST rule for a `def name(args) -> ret:` signature. Raises `SuiteError`."""
    text = signature.strip()
    if not text.startswith(("def ", "async def ")):
        text = "def " + text
    text = text.rstrip(":").rstrip() + ":\n    pass\n"
    try:
        node = ast.parse(text).body[0]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise SuiteError(f"{where}: field `function_signature`: not a Python signature") from None
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    args = node.args
    count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
    count += (args.vararg is not None) + (args.kwarg is not None)
    rule: dict[str, Any] = {"required_function_name": node.name, "argument_count": count}
    if node.returns is not None:
        rule["return_type_annotation"] = ast.unparse(node.returns)
    return rule


def _gate(evaluation: Any, signature: str, where: str) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    if not isinstance(evaluation, dict):
        raise SuiteError(f"{where}: field `evaluation`: expected an object")
    kind = evaluation.get("type")
    fields = _EXAMPLE_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        shown = "missing" if kind is None else f"unknown evaluation type {kind!r}"
        raise SuiteError(f"{where}: field `evaluation.type`: {shown}")
    gate = {k: evaluation[k] for k in ("type", "timeout_s") if k in evaluation}
    if kind == "function_examples":
        default = signature_rule(signature, where)["required_function_name"] if signature else None
        gate["function_name"] = evaluation.get("function_name", default)
    examples = evaluation.get("examples")
    if isinstance(examples, list):
        examples = [_pick(e, fields) for e in examples]
    gate["examples"] = examples
    return gate


def _pick(example: Any, fields: tuple[str, ...]) -> Any:
    if not isinstance(example, dict):
        return example  # the gate check reports it
    return {k: example[k] for k in fields if k in example}
