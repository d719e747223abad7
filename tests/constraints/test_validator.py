from hypothesis import given, settings
from hypothesis import strategies as st

from orket_pipeline.constraints import (
    AstRule,
    Constraints,
    ConstraintValidator,
    ValidationResult,
    validate_output,
)
from orket_pipeline.report._rounding import round3

SEED = Constraints(
    regex_required=("return\\s+a",),
    regex_forbidden=("\\bimport\\b",),
    ast_rules=(
        AstRule(required_function_name="add", argument_count=2, return_type_annotation="int"),
    ),
)


def test_seed_example_scores_every_check():
    result = ConstraintValidator(SEED).validate("def add(a, b) -> int:\n    return a + b\n")
    assert result.adherence_score == 1.000
    assert (result.passed_checks, result.total_checks) == (5, 5)


def test_score_is_rounded_half_up_to_three_places():
    result = ConstraintValidator(SEED).validate("import os\ndef add(a): return a\n")
    assert (result.passed_checks, result.total_checks) == (2, 5)
    assert result.adherence_score == 0.4
    thirds = ConstraintValidator(Constraints(regex_required=("a", "b", "c"))).validate("a b")
    assert thirds.adherence_score == 0.667
    # 1/16 checks failed: 0.9375 is a tie, which half up takes to 0.938 (round() says 0.937).
    sixteen = Constraints(regex_required=tuple("abcdefghijklmnop"))
    assert ConstraintValidator(sixteen).validate("abcdefghijklmno").adherence_score == 0.938


def test_python_callers_get_a_plain_float():
    sixth = Constraints(regex_required=tuple("abcdef"))
    score = ConstraintValidator(sixth).validate("a").adherence_score
    assert type(score) is float
    assert score == 0.167
    assert score * 1.5 == 0.167 * 1.5


def test_no_checks_scores_one():
    result = ConstraintValidator(Constraints()).validate("anything")
    assert result == ValidationResult(adherence_score=1.000)


def test_no_payload_scores_none():
    validator = ConstraintValidator(SEED)
    for source in (None, "", "  \n\t"):
        assert validator.validate(source) == ValidationResult(adherence_score=None)


def test_validate_output_extracts_then_scores():
    answer = "Here:\n```python\ndef add(a, b) -> int:\n    return a + b\n```\nThat's it."
    assert validate_output(SEED, answer).adherence_score == 1.000
    assert validate_output(None, answer).adherence_score == 1.000
    assert validate_output(None, "   ").adherence_score is None
    assert validate_output(SEED, None).adherence_score is None


def test_regex_reasons():
    rules = Constraints(regex_required=("nope",), regex_forbidden=("x",))
    reasons = [c.reason for c in ConstraintValidator(rules).validate("x = 1").checks]
    assert reasons == ["no match", "matched"]


_PATTERNS = st.sampled_from(["return", "\\bdef\\b", "x+$", "(a|aa)+b", "é", "\\s{2}", "[:]"])
_RULES = st.builds(
    AstRule,
    required_function_name=st.none() | st.sampled_from(["f", "add"]),
    argument_count=st.none() | st.integers(0, 3),
    return_type_annotation=st.none() | st.sampled_from(["int", "list[int]"]),
    requires_docstring=st.booleans(),
    requires_type_hints=st.booleans(),
    max_function_lines=st.none() | st.integers(1, 5),
)
_CONSTRAINTS = st.builds(
    Constraints,
    regex_required=st.lists(_PATTERNS, max_size=3).map(tuple),
    regex_forbidden=st.lists(_PATTERNS, max_size=3).map(tuple),
    ast_rules=st.lists(_RULES, max_size=2).map(tuple),
    forbidden_imports=st.lists(st.sampled_from(["os", "sys"]), max_size=2).map(tuple),
    forbidden_calls=st.lists(st.sampled_from(["eval", "os.system"]), max_size=2).map(tuple),
    no_imports=st.booleans(),
)
_SOURCES = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "def add(a, b) -> int:",
                "    return a + b",
                "import os",
                "eval('1')",
                "class A:",
                "    def f(self, x: int): ...",
                '    """Doc."""',
                "x = (",
                "\0",
                "\ud800",
                "é = 1",
                "  pass",
            ]
        ),
        max_size=8,
    ).map("\n".join),
)


@settings(max_examples=150, deadline=None)
@given(_CONSTRAINTS, _SOURCES)
def test_score_is_deterministic_exact_and_bounded(constraints, source):
    first = ConstraintValidator(constraints).validate(source)
    again = ConstraintValidator(constraints).validate(source)
    assert first == again
    if not source.strip():
        assert first.adherence_score is None
        return
    total = first.total_checks
    assert first.passed_checks == sum(c.passed for c in first.checks)
    assert total == len(first.checks) == _expected_total(constraints)
    assert first.adherence_score == (round3(first.passed_checks / total) if total else round3(1))
    assert type(first.adherence_score) is float
    assert 0 <= first.adherence_score <= 1
    assert all((c.reason is None) == c.passed for c in first.checks)


def _expected_total(c: Constraints) -> int:
    per_rule = sum(
        sum(
            v is not None
            for v in (
                r.required_function_name,
                r.argument_count,
                r.return_type_annotation,
                r.max_function_lines,
            )
        )
        + r.requires_docstring
        + r.requires_type_hints
        for r in c.ast_rules
    )
    module = bool(c.forbidden_imports) + bool(c.forbidden_calls) + c.no_imports
    return len(c.regex_required) + len(c.regex_forbidden) + per_rule + module
