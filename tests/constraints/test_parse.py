"""Hostile payloads: every one finishes, the process survives, and the score never changes."""

import sys

import pytest

from orket_pipeline.constraints import AstRule, Constraints, ConstraintValidator
from orket_pipeline.constraints._parse import MAX_CHAINED_OPERATORS, _longest_chain, parse_payload

RULES = Constraints(
    regex_required=("def add",),
    regex_forbidden=("(a|aa)+$", "\\bimport\\b"),
    ast_rules=(AstRule(required_function_name="add", argument_count=2),),
    forbidden_calls=("eval",),
)
N = 100_000

HOSTILE = {
    "nul_bytes": "def add(a, b):\n    return a\0 + b\n",
    "lone_surrogate": "def add(a, b):\n    return '\ud800'\n",
    "two_megabytes": "def add(a, b):\n    return a + b\n" + "x = [1, 2, 3, 4, 5, 6, 7]\n" * 80_000,
    "deep_parentheses": "x = " + "(" * N + "1" + ")" * N,
    "deep_unary": "x = " + "-" * N + "1",
    "deep_not": "x = " + "not " * N + "1",
    "deep_lambda": "x = " + "lambda: " * N + "1",
    "deep_power": "x = " + "**".join(["2"] * N),
    "deep_elif": "if x: pass\n" + "elif x: pass\n" * N,
    "deep_binop": "x = " + "+".join(["1"] * N),
    "deep_attribute": "x = a" + ".b" * N,
    "deep_calls": "x = f" + "()" * N,
    "deep_subscripts": "x = a" + "[0]" * N,
    "deep_indentation": "".join(" " * i + "if x:\n" for i in range(200)) + " " * 200 + "pass\n",
    "catastrophic_regex_input": "a" * 50_000 + "b",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_payload_is_scored_the_same_every_run(name):
    source = HOSTILE[name]
    first = ConstraintValidator(RULES).validate(source)
    second = ConstraintValidator(RULES).validate(source)
    assert first == second
    assert first.total_checks == 6
    assert 0 <= first.adherence_score <= 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "name",
    [
        "nul_bytes",
        "lone_surrogate",
        "deep_parentheses",
        "deep_unary",
        "deep_binop",
        "deep_calls",
        "deep_indentation",
    ],
)
def test_unparseable_payload_fails_every_ast_check_with_a_reason(name):
    result = ConstraintValidator(RULES).validate(HOSTILE[name])
    ast_checks = [c for c in result.checks if not c.kind.startswith("regex")]
    assert len(ast_checks) == 3
    for check in ast_checks:
        assert not check.passed
        assert check.reason.startswith("unparseable: ")


@pytest.mark.timeout(60)
def test_regex_checks_still_run_on_unparseable_payload():
    result = ConstraintValidator(RULES).validate(HOSTILE["nul_bytes"])
    assert result.checks[0].passed  # "def add" matches
    assert result.checks[2].passed  # no "import"


def test_lone_surrogates_read_as_replacement_characters_for_regexes():
    rules = Constraints(regex_required=("\ufffd",))
    assert ConstraintValidator(rules).validate("x = '\udc80'").passed_checks == 1


@pytest.mark.timeout(60)
def test_catastrophic_regex_fails_as_timed_out():
    result = ConstraintValidator(RULES).validate(HOSTILE["catastrophic_regex_input"])
    assert (result.checks[1].passed, result.checks[1].reason) == (False, "timed out")


def test_syntax_error_reason_names_the_line():
    assert parse_payload("x = 1\n\n\ndef f(:\n") == "unparseable: SyntaxError at line 4"


def test_parser_warnings_do_not_escape_or_change_the_result():
    # filterwarnings = error: an escaping SyntaxWarning would fail this test or the parse.
    tree = parse_payload("x = '\\d'\ny = 1if x else 2\n")
    assert not isinstance(tree, str)


def test_chain_bound_counts_binary_operators_and_trailers_per_logical_line():
    assert _longest_chain("x = a + b.c(d)[e]\ny = 1\n") == 4
    assert _longest_chain("x = (1 +\n 2 +\n 3)\n") == 2
    assert _longest_chain("data = [-1, -2, -3, f, g]\n") == 0


def test_chain_bound_stops_early_once_over_the_limit():
    assert _longest_chain("x = " + "+".join(["1"] * N)) == MAX_CHAINED_OPERATORS + 1


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="only Python 3.10 needs the guard")
def test_python_310_refuses_chains_that_would_overflow_the_c_stack():
    reason = parse_payload("x = a" + ".b" * 300_000)
    assert reason == f"unparseable: over {MAX_CHAINED_OPERATORS} chained operators on one line"
