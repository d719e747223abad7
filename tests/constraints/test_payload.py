import random
import re
import textwrap

import pytest

from orket_pipeline.constraints import extract_payload
from orket_pipeline.constraints._payload import has_payload


def test_python_block_is_taken_from_prose():
    answer = (
        "Sure! Here is a function that adds two numbers:\n\n"
        "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n\n"
        "It returns the sum. Let me know if you need tests!"
    )
    assert extract_payload(answer) == "def add(a: int, b: int) -> int:\n    return a + b"


def test_python_blocks_win_over_other_blocks_and_are_joined():
    answer = (
        "Install it:\n```bash\npip install thing\n```\n"
        "Then:\n```py\nimport thing\n```\nand\n```Python3\nthing.run()\n```\n"
        "Output:\n```\nok\n```"
    )
    assert extract_payload(answer) == "import thing\nthing.run()"


def test_without_python_blocks_every_block_is_taken():
    answer = "First:\n```\nx = 1\n```\nSecond:\n~~~text\ny = 2\n~~~\n"
    assert extract_payload(answer) == "x = 1\ny = 2"


def test_tilde_fences_and_longer_closing_fences():
    answer = "~~~python\ncode = '```'\n~~~~~\nafter"
    assert extract_payload(answer) == "code = '```'"


def test_inner_shorter_fence_does_not_close_a_longer_one():
    answer = "````python\ndoc = '''\n```\n'''\n````"
    assert extract_payload(answer) == "doc = '''\n```\n'''"


def test_unterminated_fence_runs_to_the_end():
    answer = "Here you go:\n```python\ndef f():\n    return 1\n"
    assert extract_payload(answer) == "def f():\n    return 1"


def test_fence_inside_a_list_item_is_dedented():
    answer = (
        "1. Define the helper:\n\n"
        "   ```python\n   def f(x):\n       return x * 2\n   ```\n\n"
        "2. Call it."
    )
    assert extract_payload(answer) == "def f(x):\n    return x * 2"


def test_no_fence_takes_the_whole_text_without_common_indentation():
    answer = "    def f(x):\n        return x\n"
    assert extract_payload(answer) == "def f(x):\n    return x\n"
    assert extract_payload("x = 1") == "x = 1"


def test_prose_with_indented_code_and_no_fence_is_taken_whole():
    answer = "Use this:\n\n    def f():\n        pass\n"
    assert extract_payload(answer) == answer


def test_windows_line_endings_are_normalized():
    assert extract_payload("```python\r\nx = 1\r\n```\r\n") == "x = 1"


def test_no_payload_is_none():
    assert extract_payload(None) is None
    assert extract_payload("") is None
    assert extract_payload(" \n\t ") is None
    assert extract_payload("Sorry:\n```python\n\n```") is None


def test_fence_with_attributes_and_trailing_text_on_the_info_line():
    answer = "```python title=add.py\nx = 1\n```"
    assert extract_payload(answer) == "x = 1"


HAS_PAYLOAD_CASES = [
    ("```python\ndef f(): pass\n```", True),
    ("```python\n   \n```\n```\nx = 1\n```", False),  # a blank python block wins, blank
    ("```bash\n\n```\n```py\nrun()\n```", True),
    ("```\n\t\n```\n~~~text\ny = 2\n~~~", True),
    ("plain code, no fence", True),
    ("  \n\t ", False),
    ("", False),
    (None, False),
    ("a```python\n```", False),  # the first line is no fence, the second opens an empty block
    ("x = 1  # ```py", True),  # no fence line: the whole text
    ("  ```python\n  \n  ```", False),
    ("Here:\n```python\ndef f():\n", True),  # left open, runs to the end
    ("```python", False),
    ("```python\r\nx = 1\r\n```\r\n", True),
    ("````python\ndoc = '''\n```\n'''\n````", True),
    ("~~~\n~~~\n```python\n```", False),
    ("```bash\nls\n```", True),  # no block is python: every block is the payload
    ("```bash\nls\n```\n```python\n\n```", False),  # a python block, blank, wins
    ("Use ``` here:\n```python\nx = 1\n```", True),  # the first run is on no fence line
    ("a ``` b", True),
    ("```python\n```js\nx = 1\n```", True),  # a shorter-lived run is code, not the closing
    ("~~~python\n```\n~~~", True),
    ("```python\n  \n\t\n```\n", False),
    ("`" * 5000 + "\n  ", False),  # a long run with nothing after it
    ("`" * 5000 + " python\n" + " " * 5000, False),
    ("```py\n\n```\n~~~\n~~~\n```Python3\nx = 1\n```", True),
]


@pytest.mark.parametrize(("answer", "expected"), HAS_PAYLOAD_CASES)
def test_has_payload_says_whether_extract_payload_finds_one(
    answer: str | None, expected: bool
) -> None:
    assert has_payload(answer) is expected
    assert (extract_payload(answer) is not None) is expected


_PYTHON = ("python", "py", "python3", "py3")


def _reference_payload(output: str | None) -> str | None:
    """`extract_payload` as the module docstring states it, line by line: the oracle."""
    if output is None:
        return None
    lines = output.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[tuple[str, str]] = []
    opening: re.Match[str] | None = None
    content: list[str] = []
    for line in lines:
        fence = re.fullmatch(r"([ \t]*)(`{3,}|~{3,})(.*)", line)
        if opening is None:
            if fence is not None:
                opening, content = fence, []
            continue
        if fence is not None and _reference_closes(opening.group(2), fence):
            blocks.append(_reference_block(opening, content))
            opening = None
            continue
        content.append(line)
    if opening is not None:  # left open: its content runs to the end, less a final newline
        language, code = _reference_block(opening, content)
        blocks.append((language, code.removesuffix("\n")))
    if blocks:
        python = [code for language, code in blocks if language in _PYTHON]
        payload = "\n".join(python or [code for _, code in blocks])
    else:
        text = "\n".join(lines)
        payload = textwrap.dedent(text) if text[:1].isspace() else text
    return payload if payload.strip() else None


def _reference_closes(run: str, fence: re.Match[str]) -> bool:
    """The same character, at least as long, nothing after it."""
    closing = fence.group(2)
    return closing[0] == run[0] and len(closing) >= len(run) and not fence.group(3).strip()


def _reference_block(opening: re.Match[str], content: list[str]) -> tuple[str, str]:
    words = opening.group(3).split()
    language = words[0].lower().lstrip(".{") if words else ""
    margin = len(opening.group(1))
    code = [re.sub(rf"^[ \t]{{1,{margin}}}", "", line) if margin else line for line in content]
    return language, "\n".join(code)


_FENCE_CHARS = ["`", "~"]
_INDENTS = ["", "", "", " ", "  ", "    ", "\t", " \t"]
_INFOS = [
    "",
    "",
    "python",
    "py",
    "Python",
    "PY3",
    "python3",
    "py3",
    "{.python}",
    ".python",
    "python extra",
    " python",
    "\tpy title=x.py",
    "pythonx",
    "py3k",
    "bash",
    "js",
    "text",
    "```",
    "~~~ python",
    "\u00a0python",
    "\x0cpy",
    "\u2028python",
    "{python",
    "PyThOn3 x",
]
_CONTENT = [
    "x = 1",
    "def f():",
    "    return 1",
    "",
    "",
    " ",
    "\t",
    "  \t ",
    "\x0b",
    "\u2028",
    "\u00a0",
    "print('```')",
    "a ``` b",
    "~",
    "~~",
    "x ~~~ y",
    "`",
    "``",
    "Here is the code:",
    "It runs in O(n).",
    "  ```",
    "```python",
    "~~~~",
    "````",
    "``` trailing",
    "~~~ x",
]


def _fence(rng: random.Random) -> str:
    char = rng.choice(_FENCE_CHARS)
    return rng.choice(_INDENTS) + char * rng.randint(2, 5) + rng.choice(_INFOS)


def _block(rng: random.Random) -> list[str]:
    """A fenced block as models write them: an opening, blank or code lines, and a closing
    of the same character (sometimes shorter, longer, with text after it, or missing)."""
    indent, char, length = rng.choice(_INDENTS), rng.choice(_FENCE_CHARS), rng.randint(3, 4)
    body = [rng.choice(["", " ", "\t", "x = 1", "  return x"]) for _ in range(rng.randint(0, 2))]
    closing = indent + char * (length + rng.choice([-1, 0, 0, 1])) + rng.choice(["", "", " ", "x"])
    tail = [closing] if rng.random() < 0.85 else []
    return [indent + char * length + rng.choice(_INFOS), *body, *tail]


def _random_answer(rng: random.Random) -> str:
    """An answer built to hit the edges of the fence rules: runs of 2 to 5, indentation,
    python-like info strings, blank and unclosed blocks, mixed line endings."""
    lines: list[str] = []
    for _ in range(rng.randint(0, 6)):
        kind = rng.random()
        if kind < 0.3:
            lines.extend(_block(rng))
        else:
            lines.append(_fence(rng) if kind < 0.5 else rng.choice(_CONTENT))
    newline = rng.choice(["\n", "\n", "\n", "\r\n", "\r"])
    text = newline.join(lines) + rng.choice(["", "", newline, " ", newline + "  "])
    if rng.random() < 0.1:
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng.choice(["```", "~~~", "```py", " ", "\n"]) + text[cut:]
    return text


def test_has_payload_and_extract_payload_agree_with_the_stated_rules_on_random_answers() -> None:
    rng = random.Random(20261203)
    for _ in range(8_000):
        answer = _random_answer(rng)
        expected = _reference_payload(answer)
        assert extract_payload(answer) == expected, repr(answer)
        assert has_payload(answer) is (expected is not None), repr(answer)
