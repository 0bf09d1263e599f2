"""The formatter: golden files (fmt/NAME.rules -> fmt/NAME.rules.formatted) and its safety net."""

from __future__ import annotations

import decimal
import random
from collections import Counter
from pathlib import Path

import pytest

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostics
from ruledesk.grammar.formatter import FormatError, _verify, check_formatted, format_expr, format_source
from ruledesk.grammar import parse

FIXTURES = Path(__file__).parent / "fmt"
CASES = sorted(p.name.removesuffix(".rules") for p in FIXTURES.glob("*.rules"))


def _read(name: str, suffix: str = ".rules") -> str:
    return (FIXTURES / f"{name}{suffix}").read_text(encoding="utf-8")


def _parse_clean(text: str) -> ast.Module:
    diagnostics = Diagnostics()
    module = parse(text, "<string>", diagnostics)
    assert not diagnostics.errors, [d.format(text) for d in diagnostics.errors]
    return module


def _comment_texts(text: str) -> Counter[str]:
    return Counter(c.text.rstrip() for c in _parse_clean(text).comments)


def test_there_are_enough_golden_pairs():
    assert len(CASES) >= 12
    for name in CASES:
        assert (FIXTURES / f"{name}.rules.formatted").exists(), name


@pytest.mark.parametrize("name", CASES)
def test_formats_to_golden(name):
    assert format_source(_read(name), f"{name}.rules") == _read(name, ".rules.formatted")


@pytest.mark.parametrize("name", CASES)
def test_golden_is_a_fixed_point(name):
    golden = _read(name, ".rules.formatted")
    assert format_source(golden) == golden
    assert check_formatted(golden)


@pytest.mark.parametrize("name", CASES)
def test_golden_means_the_same_rules_and_keeps_every_comment(name):
    source, golden = _read(name), _read(name, ".rules.formatted")
    assert _parse_clean(golden) == _parse_clean(source)
    assert _comment_texts(golden) == _comment_texts(source)


def test_only_unbreakable_lines_pass_100_columns():
    text = _read("long_lines", ".rules.formatted")
    too_long = [line.strip() for line in text.splitlines() if len(line) > 100]
    # A condition that is not an and/or, and an action with one parameter, have nowhere to break.
    assert [line.split(" ")[:2] for line in too_long] == [["if", "any"], ['"Post', "Order"]]


def test_messy_input_is_not_formatted():
    assert not check_formatted(_read("messy_whitespace"))
    assert not check_formatted("let a = 1")  # no final newline


@pytest.mark.parametrize("text, code, line, col", [
    ('rule "x" {\n    when "A"\n    "B"\n}\n', "E103", 3, 5),
    ('let a = "abc\n', "E101", 1, 9),
    ('rule "x" {\n    when "A"\n    then\n', "E102", 3, 9),
    ("let a = 1 < 2 < 3\n", "E104", 1, 15),
])
def test_syntax_error_raises_with_a_located_diagnostic(text, code, line, col):
    with pytest.raises(FormatError) as info:
        format_source(text, "bad.rules")
    first = info.value.diagnostics[0]
    assert (first.code, first.loc.file, first.loc.line, first.loc.col) == (code, "bad.rules", line, col)
    assert f"bad.rules:{line}:{col}: {code}" in str(info.value)


@pytest.mark.parametrize("output, problem", [
    ("let a = 2\n", "does not mean the same rules"),
    ("let a = 1\n", "loses a comment"),
    ("let a =\n", "does not parse"),
])
def test_safety_net_refuses_output_that_changes_the_file(output, problem):
    module = _parse_clean("let a = 1  # one\n")
    with pytest.raises(FormatError) as info:
        _verify(module, output)
    [bug] = info.value.diagnostics
    assert bug.code == "E900"
    assert problem in bug.message and "formatter bug" in bug.message


def test_crlf_input_formats_to_lf():
    assert format_source('let a = 1  # one\r\nlet b = "x"\r\n') == 'let a = 1  # one\nlet b = "x"\n'


def test_one_line_lets_on_consecutive_lines_stay_a_block_and_a_blank_line_between_them_stays():
    block = "let a = 1\nlet b = 2\n\nlet c = 3\n"
    assert format_source(block) == block
    assert format_source("let a = 1\nlet b(x) =\n    x or a\nlet c = 3\n") == "let a = 1\nlet b(x) = x or a\n\nlet c = 3\n"
    assert format_source('let a = 1\nrule "r" { when "Order is Imported" then }\n').startswith("let a = 1\n\nrule")


# ---- randomised: expressions print with exactly the parentheses they need ----------------------

_LEAVES = [
    lambda r: ast.Name(r.choice("abc")),
    lambda r: ast.NumberLit(1, "1"),
    lambda r: ast.NumberLit(decimal.Decimal("2.5"), "2.5"),
    lambda r: ast.StringLit("s", '"s"'),
    lambda r: ast.DurationLit(7200, "2h"),
    lambda r: ast.BoolLit(r.random() < 0.5),
    lambda r: ast.NullLit(),
    lambda r: ast.ListLit(()),
]


def _random_expr(r: random.Random, depth: int) -> ast.Expr:
    if depth == 0 or r.random() < 0.15:
        return r.choice(_LEAVES)(r)

    def sub() -> ast.Expr:
        return _random_expr(r, depth - 1)

    def maybe() -> ast.Expr | None:
        return sub() if r.random() < 0.5 else None

    choices = [
        lambda: ast.BoolOp(r.choice(["and", "or"]), tuple(sub() for _ in range(r.randint(2, 3)))),
        lambda: ast.Not(sub()),
        lambda: ast.Neg(sub()),
        lambda: ast.BinOp(r.choice("+-*/%"), sub(), sub()),
        lambda: ast.Compare(r.choice(ast.COMPARE_OPS), sub(), sub()),
        lambda: ast.Test(r.choice(ast.TEST_OPS), sub()),
        lambda: ast.Quantifier(r.choice(["any", "all"]), "i", sub(), sub()),
        lambda: ast.Count("i", sub(), maybe()),
        lambda: ast.Count(None, ast.Attr(sub(), "items"), None),
        lambda: ast.Sum(sub(), None, None, None),
        lambda: ast.Sum(sub(), "i", sub(), maybe()),
        lambda: ast.Attr(sub(), "f"),
        lambda: ast.Index(sub(), sub()),
        lambda: ast.Call("f", tuple(sub() for _ in range(r.randint(0, 2)))),
        lambda: ast.ListLit(tuple(sub() for _ in range(r.randint(1, 2)))),
    ]
    return r.choice(choices)()


def test_random_expressions_round_trip():
    r = random.Random(20240601)
    for _ in range(400):
        tree = _random_expr(r, 4)
        text = format_expr(tree)
        assert _parse_clean(f"let x = {text}\n").items[0].body == tree, text


# ---- randomised: comments anywhere are kept, and formatting them is idempotent -----------------

def _sprinkle_comments(text: str, r: random.Random) -> str:
    out = []
    for number, line in enumerate(text.split("\n")):
        if r.random() < 0.3:
            out.append(" " * r.randint(0, 9) + f"# own {number}")
        if line.strip() and r.random() < 0.4:
            line += f"  # after {number}"
        out.append(line)
        if r.random() < 0.1:
            out.append("")
    return "\n".join(out)


@pytest.mark.parametrize("name", CASES)
def test_random_comments_are_kept_and_stable(name):
    r = random.Random(name)
    for base in (_read(name), _read(name, ".rules.formatted")):
        for _ in range(15):
            text = _sprinkle_comments(base, r)
            once = format_source(text)
            assert format_source(once) == once, text
            assert _comment_texts(once) == _comment_texts(text)


def test_the_example_ruleset_is_in_canonical_layout():
    root = Path(__file__).resolve().parents[2] / "rules.d"
    files = sorted(root.glob("*.rules"))
    assert files
    for path in files:
        assert check_formatted(path.read_text(encoding="utf-8"), str(path)), f"run: ruledesk fmt {path}"
