import textwrap

import pytest

from orket_pipeline.constraints import AstRule, Constraints, ConstraintValidator


def checks(source, **fields):
    rules = Constraints(**fields)
    result = ConstraintValidator(rules).validate(textwrap.dedent(source))
    return [(c.kind, c.passed, c.reason) for c in result.checks]


def rule(source, **fields):
    return checks(source, ast_rules=(AstRule(**fields),))


def test_seed_rule_passes_on_matching_function():
    source = "def add(a: int, b: int) -> int:\n    return a + b\n"
    assert rule(
        source, required_function_name="add", argument_count=2, return_type_annotation="int"
    ) == [
        ("required_function_name", True, None),
        ("argument_count", True, None),
        ("return_type_annotation", True, None),
    ]


def test_missing_function_fails_every_check_of_its_rule():
    assert rule("def sub(a, b):\n    pass\n", required_function_name="add", argument_count=2) == [
        ("required_function_name", False, "function add not found"),
        ("argument_count", False, "function add not found"),
    ]


def test_without_a_name_the_first_top_level_function_is_checked():
    source = """
        class A:
            def m(self): pass
        def first(a, b, c): pass
        def second(a, b): pass
    """
    assert rule(source, argument_count=2) == [("argument_count", False, "3 parameters, expected 2")]
    assert rule("x = 1\n", argument_count=0) == [("argument_count", False, "no top-level function")]


def test_argument_count_counts_every_kind_of_parameter():
    source = "def f(a, /, b, *args, c, d=1, **kwargs): pass\n"
    assert rule(source, argument_count=6) == [("argument_count", True, None)]
    assert rule("def f(): pass\n", argument_count=1) == [
        ("argument_count", False, "0 parameters, expected 1")
    ]


def test_named_function_is_found_breadth_first_including_methods():
    source = """
        class Calc:
            async def add(self, a, b) -> int: ...
    """
    assert rule(source, required_function_name="add", argument_count=3) == [
        ("required_function_name", True, None),
        ("argument_count", True, None),
    ]


@pytest.mark.parametrize(
    ("annotation", "expected", "passed"),
    [
        ("list[int]", "list[ int ]", True),
        ("Optional[str]", "str | None", False),
        ("'int'", "int", False),
        ("int", "int", True),
    ],
)
def test_return_annotation_compares_unparsed_text(annotation, expected, passed):
    [(_, ok, _)] = rule(f"def f() -> {annotation}: pass\n", return_type_annotation=expected)
    assert ok is passed


def test_missing_return_annotation_has_a_reason():
    assert rule("def f(): pass\n", return_type_annotation="int") == [
        ("return_type_annotation", False, "no return annotation, expected int")
    ]
    assert rule("def f() -> str: pass\n", return_type_annotation="int") == [
        ("return_type_annotation", False, "returns str, expected int")
    ]


def test_requires_docstring():
    assert rule('def f():\n    """Add."""\n', requires_docstring=True) == [
        ("requires_docstring", True, None)
    ]
    assert rule('def f():\n    """ """\n', requires_docstring=True) == [
        ("requires_docstring", False, "no docstring")
    ]


def test_requires_type_hints_skips_self_of_methods():
    source = """
        class A:
            def m(self, x: int, *args, y) -> None: ...
    """
    assert rule(source, required_function_name="m", requires_type_hints=True)[1] == (
        "requires_type_hints",
        False,
        "missing annotations: args, y",
    )
    assert rule("def f(self, x: int): ...\n", requires_type_hints=True) == [
        ("requires_type_hints", False, "missing annotations: self, return")
    ]


def test_max_function_lines_counts_def_to_last_line():
    source = "@decorator\ndef f():\n    a = 1\n    return a\n"
    assert rule(source, max_function_lines=3) == [("max_function_lines", True, None)]
    assert rule(source, max_function_lines=2) == [("max_function_lines", False, "3 lines, max 2")]


def test_false_booleans_are_not_checks():
    assert rule("def f(): pass\n", requires_docstring=False, requires_type_hints=False) == []


def test_forbidden_imports_cover_submodules_from_imports_and_dunder_import():
    for source in [
        "import os.path\n",
        "from os import system\n",
        "x = __import__('os')\n",
        "import importlib\nimportlib.import_module('os')\n",
    ]:
        [(_, passed, reason)] = checks(source, forbidden_imports=("os",))
        assert not passed and reason.startswith("imports os")
    assert checks("import osmosis\nfrom . import os\n", forbidden_imports=("os",)) == [
        ("forbidden_imports", True, None)
    ]


def test_forbidden_calls_resolve_import_aliases():
    source = """
        from os import system as run
        import subprocess as sp
        run("ls")
        sp.call(["ls"])
    """
    assert checks(source, forbidden_calls=("os.system",)) == [
        ("forbidden_calls", False, "calls os.system at line 4")
    ]
    assert checks(source, forbidden_calls=("subprocess.call",))[0][2] == (
        "calls subprocess.call at line 5"
    )


def test_forbidden_calls_match_builtins_but_not_methods_of_the_same_name():
    assert checks("builtins.eval('1')\n", forbidden_calls=("eval",))[0][1] is False
    assert checks("model.eval()\nexec\n", forbidden_calls=("eval", "exec")) == [
        ("forbidden_calls", True, None)
    ]


def test_no_imports_reports_the_first_import():
    assert checks("x = 1\nimport sys\nimport os\n", no_imports=True) == [
        ("no_imports", False, "imports sys at line 2")
    ]
    assert checks("x = 1\n", no_imports=True) == [("no_imports", True, None)]


def test_module_primitives_are_one_check_each():
    source = "import os\neval('x')\nexec('y')\n"
    result = checks(
        source, forbidden_imports=("os", "sys"), forbidden_calls=("eval", "exec"), no_imports=True
    )
    assert [kind for kind, _, _ in result] == ["forbidden_imports", "forbidden_calls", "no_imports"]
