import pickle

import msgspec

import orket_pipeline.constraints as constraints
from orket_pipeline.constraints import AstRule, Constraints, ValidationResult, validate_output


def test_all_is_sorted_and_complete():
    assert constraints.__all__ == sorted(constraints.__all__)
    for name in constraints.__all__:
        assert getattr(constraints, name) is not None


def test_constraints_are_frozen_hashable_structs():
    a = Constraints(regex_required=("x",), ast_rules=(AstRule(argument_count=2),))
    b = msgspec.convert(
        {"regex_required": ["x"], "ast_rules": [{"argument_count": 2}]}, Constraints
    )
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1


def test_validate_output_arguments_and_result_pickle_for_a_worker_process():
    rules = Constraints(regex_required=("return",), ast_rules=(AstRule(argument_count=1),))
    result = validate_output(rules, "```py\ndef f(x):\n    return x\n```")
    assert pickle.loads(pickle.dumps(rules)) == rules
    assert pickle.loads(pickle.dumps(result)) == result
    assert isinstance(result, ValidationResult)
