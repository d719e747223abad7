"""Instruction adherence: scoring a model's code payload against a task's constraints.

```python
constraints = load_constraints(rules_dict, where="suite.json: task t3")  # ConstraintError if bad
result = ConstraintValidator(constraints).validate(code)          # or validate_output(c, raw)
result.adherence_score, result.passed_checks, result.total_checks, result.checks
```

Every regex and every primitive that is set is one check; the score is passed / total rounded
half up to three places (`round3`, a plain float: `0.167`), `1.0` with no checks, `None`
with no payload.

Primitives, with an example each (JSON):

- `"regex_required": ["return\\\\s+a"]`, `"regex_forbidden": ["\\\\bprint\\\\("]`: one check
  per pattern; a required pattern must match somewhere, a forbidden one nowhere.
- `"ast_rules": [{...}]`: checks on one function, the one named by `required_function_name`,
  else the first top-level function (when it is missing, the rule's checks fail):
  - `"required_function_name": "add"`: `def add` (or `async def`) exists, at any depth.
  - `"argument_count": 2`: positional-only, positional and keyword-only parameters, plus one
    each for `*args` and `**kwargs`.
  - `"return_type_annotation": "list[int]"`: equal by `ast.unparse` of both sides.
  - `"requires_docstring": true`: a non-empty docstring.
  - `"requires_type_hints": true`: every parameter but a method's `self`/`cls`, and the return.
  - `"max_function_lines": 30`: from the `def` line to the last line of the body.
- `"forbidden_imports": ["os", "subprocess"]`: one check; `"os"` also covers `os.path`,
  `from os import system` and `__import__("os")`.
- `"forbidden_calls": ["eval", "exec", "os.system"]`: one check; names resolve through the
  payload's imports (`from os import system as s; s()` is `os.system`); `"eval"` also matches
  `builtins.eval`. A static check: `getattr(os, "system")()` is not seen.
- `"no_imports": true`: one check; no `import` statement at all.

Constraints reject unknown fields, so a misspelt primitive is an error, not a silently smaller
score (see `_model.py` for the forward-compatibility trade-off).

Regex engines. Patterns are Python `re` syntax, checked and given their meaning by the `regex`
module. RE2 is linear-time, so a search there cannot be made slow by any input and its answer
never depends on machine speed; but it lacks backreferences and lookaround and reads `\\w`,
`\\b`, `\\s`, `$` differently. So a pattern runs on RE2 only when the two engines must agree:
an ASCII pattern without `$`, `(?...)` groups, POSIX classes or escapes such as `\\s`, `\\Z`,
`\\1`; and, when it uses `\\w \\W \\d \\D \\b \\B`, only on ASCII text. Every other search runs
on `regex` with a one-second timeout, and a search that times out fails its check ("timed
out"). That is the one place a score could depend on machine speed, and only for a pattern
that backtracks for about a second; a catastrophic pattern (`(a|aa)+$` against a long
non-matching input) runs far past the budget and fails every time.

Hostile payloads. The validator never imports or executes code: it parses with `ast.parse`.
A payload the parser rejects (SyntaxError, ValueError for NUL bytes and lone surrogates,
RecursionError, MemoryError) fails every AST check with the reason ("unparseable: SyntaxError
at line 4"); regex checks still run, lone surrogates read as U+FFFD. On Python 3.10, whose
parser can overflow the C stack on deeply chained expressions, such payloads are refused before
parsing (see `_parse.py`).
"""

from ._load import load_constraints as load_constraints
from ._model import AstRule as AstRule
from ._model import CheckResult as CheckResult
from ._model import Constraints as Constraints
from ._model import ValidationResult as ValidationResult
from ._payload import extract_payload as extract_payload
from ._validator import ConstraintValidator as ConstraintValidator
from ._validator import validate_output as validate_output

__all__ = [
    "AstRule",
    "CheckResult",
    "ConstraintValidator",
    "Constraints",
    "ValidationResult",
    "extract_payload",
    "load_constraints",
    "validate_output",
]
