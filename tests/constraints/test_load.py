import msgspec
import pytest

from orket_pipeline._exceptions import ConstraintError, InputError
from orket_pipeline.constraints import AstRule, Constraints, ConstraintValidator, load_constraints

WHERE = "suite.json: task t3"


def load_error(obj: object) -> str:
    with pytest.raises(ConstraintError) as caught:
        load_constraints(obj, where=WHERE)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(WHERE + ": constraints")
    return message


def test_valid_constraints_load_with_every_field():
    loaded = load_constraints(
        {
            "regex_required": ["return\\s+a"],
            "regex_forbidden": ["\\bimport\\b", "(?<=x)y", "(a)\\1"],
            "ast_rules": [
                {
                    "required_function_name": "add",
                    "argument_count": 2,
                    "return_type_annotation": "int",
                    "requires_docstring": True,
                    "requires_type_hints": True,
                    "max_function_lines": 30,
                }
            ],
            "forbidden_imports": ["os", "os.path"],
            "forbidden_calls": ["eval", "os.system"],
            "no_imports": False,
        },
        where=WHERE,
    )
    assert loaded.ast_rules[0] == AstRule(
        required_function_name="add",
        argument_count=2,
        return_type_annotation="int",
        requires_docstring=True,
        requires_type_hints=True,
        max_function_lines=30,
    )
    assert loaded.regex_forbidden[2] == "(a)\\1"


def test_empty_object_means_no_constraints():
    assert load_constraints({}, where=WHERE) == Constraints()


def test_invalid_regex_names_where_field_index_and_pattern():
    message = load_error({"regex_required": ["ok", "a("]})
    assert message.startswith(f"{WHERE}: constraints.regex_required[1]: invalid regex 'a(': ")
    assert "missing )" in message


def test_constraint_error_is_an_input_error_for_exit_code_2():
    assert issubclass(ConstraintError, InputError)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"ast_rules": [{"argument_count": "2"}]}, "constraints.ast_rules[0].argument_count: "),
        ({"ast_rules": [{"argument_count": True}]}, "constraints.ast_rules[0].argument_count: "),
        ({"ast_rules": [{"argument_count": -1}]}, "constraints.ast_rules[0].argument_count: "),
        ({"ast_rules": [{"max_function_lines": 0}]}, "constraints.ast_rules[0].max_function_lines"),
        ({"regex_required": "return"}, "constraints.regex_required: expected `array`"),
        ({"regex_forbidden": [1]}, "constraints.regex_forbidden[0]: expected `str`"),
        ({"ast_rules": {}}, "constraints.ast_rules: expected `array`"),
        ([], "constraints: expected `object`"),
    ],
)
def test_ill_typed_rule_names_the_field(obj, expected):
    assert expected in load_error(obj)


def test_misspelt_field_is_an_error_not_a_smaller_score():
    assert "unknown field `regex_requried`" in load_error({"regex_requried": ["x"]})
    assert "unknown field `argument_cont`" in load_error({"ast_rules": [{"argument_cont": 1}]})


def test_annotation_that_is_not_an_expression_is_an_error():
    message = load_error({"ast_rules": [{"return_type_annotation": "List["}]})
    assert "constraints.ast_rules[0].return_type_annotation: not a Python expression" in message


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"ast_rules": [{"required_function_name": "my func"}]}, "required_function_name"),
        ({"forbidden_calls": ["os system"]}, "forbidden_calls[0]"),
        ({"forbidden_imports": ["os", "a..b"]}, "forbidden_imports[1]"),
    ],
)
def test_names_must_be_python_names(obj, field):
    assert field in load_error(obj)


def test_msgspec_convert_then_validator_checks_regexes_too():
    rules = msgspec.convert({"regex_forbidden": ["(?<=a"]}, Constraints)
    with pytest.raises(ConstraintError, match=r"^constraints\.regex_forbidden\[0\]: invalid regex"):
        ConstraintValidator(rules)


def test_validator_checks_types_of_directly_built_constraints():
    rules = Constraints(regex_required=(3,))  # type: ignore[arg-type]
    with pytest.raises(ConstraintError, match=r"regex_required\[0\]: expected `str`"):
        ConstraintValidator(rules)
