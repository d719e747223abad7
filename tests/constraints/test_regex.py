import contextlib

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from orket_pipeline.constraints._regex import PatternError, compile_pattern


@pytest.mark.parametrize(
    "pattern",
    ["return\\s+a", "\\bimport\\b$", "(a)\\1", "(?<=x)y", "(?i)abc", "\\p{L}", "é", "[[:alpha:]]"],
)
def test_patterns_re2_could_misread_use_the_regex_engine(pattern):
    assert not compile_pattern(pattern).linear_time


@pytest.mark.parametrize("pattern", ["def add", "\\bimport\\b", "os\\.system\\(", "(?:ab)+c", ""])
def test_plain_patterns_use_re2(pattern):
    assert compile_pattern(pattern).linear_time


def test_invalid_pattern_raises_pattern_error():
    with pytest.raises(PatternError, match="missing"):
        compile_pattern("a(")


def test_word_classes_follow_python_on_non_ascii_text():
    pattern = compile_pattern("\\bimport\\b")
    assert pattern.search("éimport", text_is_ascii=False) is False
    assert pattern.search("import os", text_is_ascii=True) is True


@pytest.mark.timeout(30)
def test_catastrophic_backtracking_reports_timed_out():
    pattern = compile_pattern("(a|aa)+$")
    assert pattern.search("a" * 5_000 + "b", text_is_ascii=True) is None


@pytest.mark.timeout(30)
def test_catastrophic_pattern_re2_can_run_finishes_with_an_answer():
    pattern = compile_pattern("(x+x+)+y")
    assert pattern.linear_time
    assert pattern.search("x" * 100_000, text_is_ascii=True) is False


_PIECES = st.sampled_from(
    [
        "a",
        "b",
        "_",
        "1",
        " ",
        "\\w",
        "\\W",
        "\\d",
        "\\D",
        "\\b",
        "\\B",
        ".",
        "[ab]",
        "[^a]",
        "[\\w]",
        "x*",
        "(?:ab)+",
        "a|b",
        "^",
        "\\.",
        "a{2}",
        "b?",
        "\\A",
        "\\n",
        "[a-c]+",
    ]
)
_TEXTS = st.text(alphabet="ab1_ .x\n-c", max_size=30)


@given(st.lists(_PIECES, min_size=1, max_size=5).map("".join), _TEXTS)
def test_re2_and_python_semantics_agree_wherever_re2_is_used(pattern, text):
    compiled = compile_pattern(pattern)
    if compiled.linear_time:
        expected = regex.compile(pattern, regex.VERSION0).search(text) is not None
        assert compiled.search(text, text_is_ascii=True) is expected


BOMB = "((((a{100}){100}){100}){100})"  # 10^8 copies of `a` once expanded: 24 GB in `regex`


@pytest.mark.parametrize("pattern", [BOMB, "a{1000000}", "(?:x{1000}){60}", "[ab]{99999999999}"])
def test_a_pattern_whose_counted_repeats_expand_too_far_is_refused_before_compiling(pattern):
    with pytest.raises(PatternError, match="too large"):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["(?:x{1000}){40}", "a{40000}", "(?:a{100}){1,100000}", "\\d{3}-\\d{4}", "x{,9}"]
)
def test_patterns_under_the_size_limit_compile(pattern):
    assert compile_pattern(pattern).search("x" * 40_000, text_is_ascii=True) is not None


@given(st.text(alphabet="ab(){}[]\\,0123456789|*?+^", max_size=30))
def test_the_size_estimate_and_compiling_never_raise_anything_but_pattern_error(pattern):
    from orket_pipeline.constraints._regex import MAX_EXPANDED_SIZE, expanded_size

    size = expanded_size(pattern)
    assert 0 <= size <= MAX_EXPANDED_SIZE + 1
    with contextlib.suppress(PatternError):  # refused or invalid, never anything else
        compile_pattern(pattern)
