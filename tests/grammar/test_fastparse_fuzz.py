"""Differential fuzzing of the fast parser (grammar/fastparse.py) against Lark (grammar/ruledesk.lark).

Hypothesis writes rule files from the grammar's structure (every rule form, trigger, operator, test,
quantifier, call, index, let and action form) laid out at random (blanks, tabs, newlines, CRLF,
comments wherever a comment may go, names glued to punctuation, keyword-like field names), then
mutates them token by token, and also writes token soup (mostly invalid).  For every text:

* whatever the fast parser takes, Lark takes too and reads identically (tree with locations and
  raw text, comments, diagnostics);
* whatever Lark rejects, the fast parser gives up on (``Bail``);
* ``parse`` (fast path first) and ``parse_with_lark`` give the same module and diagnostics.

RULEDESK_FUZZ_EXAMPLES raises the number of examples per test for a long local hunt
(e.g. ``RULEDESK_FUZZ_EXAMPLES=20000 pytest tests/grammar/test_fastparse_fuzz.py``).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import UnexpectedInput

from ruledesk.grammar.diagnostics import Diagnostics
from ruledesk.grammar.parser import grammar_text, parse, parse_with_lark
from support import ast_dump as dump
from support import fast_reading as fast

_HUNT = os.environ.get("RULEDESK_FUZZ_EXAMPLES")


def fuzz(examples: int):
    """About 300 examples in all by default: the suite stays fast; the hunt sets its own number."""
    return settings(max_examples=int(_HUNT) if _HUNT else examples, deadline=None, database=None,
                    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                            HealthCheck.filter_too_much])

# A recogniser only: the language's definition, with no transformer that could hide a rejection.
_RECOGNISER = Lark(grammar_text(), parser="lalr", lexer="contextual", strict=True)


def _diagnostics(diagnostics: Diagnostics) -> list:
    return [dataclasses.astuple(d) for d in diagnostics.items]


def lark_accepts(text: str) -> bool:
    try:
        _RECOGNISER.parse(text)
    except UnexpectedInput:
        return False
    return True


def module(parser, text: str):
    diagnostics = Diagnostics()
    m = parser(text, "f.rules", diagnostics)
    return dump(m.items), dump(m.comments), _diagnostics(diagnostics), m.source


def check(text: str) -> bool:
    """Both parsers agree on ``text``; True when the fast parser took it."""
    got = fast(text)
    accepted = lark_accepts(text)
    if got is not None:
        assert accepted, f"the fast parser takes a text Lark rejects: {text!r}"
        want = module(parse_with_lark, text)
        assert got == want[:3], f"the fast parser reads the text differently: {text!r}"
    assert module(parse, text) == module(parse_with_lark, text), text
    return got is not None


# ---- layout ---------------------------------------------------------------------------------

_WORDY = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
comment_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)


SEPARATORS = ["", "", "", "", " ", " ", " ", "  ", "\t", "\n", "\r\n", " \t ", "\n\n", "\f", "\r", "\n    ",
              "#\n", " # c\n", "# a \"b\" { } rule let\r\n", "\n# then when if\n  ", "#\t\u00e9\r\n", " #x\r\n",
              "\t# ==\n\t"]


def _runs_together(left: str, right: str) -> bool:
    if left[-1] in _WORDY and right[0] in _WORDY:
        return True
    if left[-1] in _WORDY and right[0] == "." and left[0].isdigit():
        return True  # 1 .5 would become 1.5, 2h .x would become 2h.x
    if left[-1] == "." and right[0].isdigit():
        return True
    return left[-1] in "<>=!" and right[0] == "="


@st.composite
def layout(draw, tokens: list[str]) -> str:
    """The tokens with blanks and comments between them; glued only where they cannot run together."""
    seps = draw(st.lists(st.one_of(st.sampled_from(SEPARATORS),
                                   comment_text.map(lambda c: "#" + c + "\n")),
                         min_size=len(tokens) + 1, max_size=len(tokens) + 1))
    out = [seps[0]]
    for i, token in enumerate(tokens):
        if i:
            sep = seps[i]
            if not sep and _runs_together(tokens[i - 1], token):
                sep = " "
            out.append(sep)
        out.append(token)
    last = seps[-1]
    if last.startswith("#") and "\r" not in last:
        last = " " + last.rstrip("\n")  # a comment that ends the file without a newline
    out.append(last)
    return "".join(out)


# ---- tokens ---------------------------------------------------------------------------------

RESERVED = ["not", "any", "all", "count", "sum", "true", "false", "null"]
KEYWORDISH = ["in", "is", "set", "empty", "where", "then", "if", "when", "rule", "let", "for", "and", "or",
              "every", "button", "folder", "priority", "disabled", "starts", "with", "ends", "contains",
              "matches", "index", "notes", "anyway", "counts", "summary", "nullable", "in_", "is2", "truex"]
PLAIN = ["order", "item", "event", "store", "x", "i", "_", "_a1", "A", "lower", "len", "now", "round",
         "order_items", "shipping", "country", "metadata", "Size", "pod_countries", "is_pod_item"]
name = st.sampled_from(PLAIN + KEYWORDISH)  # where the grammar takes a name (after `.`, binders, params)
value_name = st.sampled_from(PLAIN + KEYWORDISH)  # an operand: reserved words are keywords there

string_char = st.one_of(
    st.characters(blacklist_characters='"\\\n', blacklist_categories=("Cs",)),
    st.sampled_from(["\\\"", "\\\\", "\\n", "\\t", "\\u00e9", "\\u12ab", "\\d", "\\.", "\\u12", "\\\r",
                     "é", "日本", "🙂", "{{ order.id }}", "{%", "#", "\r", "'", "\\#"]),
)
string = st.lists(string_char, max_size=6).map(lambda cs: '"' + "".join(cs) + '"')
number = st.one_of(st.sampled_from(["0", "1", "12", "1.50", "007", "0.0", "12.5", "3", "100", "1" * 101,
                                    "0" * 103 + "1", "9999999999999999999"]),
                   st.integers(0, 10**6).map(str),
                   st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda p: f"{p[0]}.{p[1]:03d}"))
duration = st.one_of(st.sampled_from(["2h", "30m", "1w", "2d", "45s", "0s", "99999999999999999d", "6h"]),
                     st.tuples(st.integers(0, 10**4), st.sampled_from("smhdw")).map(lambda p: f"{p[0]}{p[1]}"))
bad_number = st.sampled_from(["1.5h", "2days", "3x", "12abc", "0x10", "1e5", "2hx", "7_", "1.0s"])
comp_op = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def flat(*parts):
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.extend(part)
    return out


def joined(items: list[list[str]], sep: str = ",") -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        if i:
            out.append(sep)
        out.extend(item)
    return out


# ---- expressions (token lists) --------------------------------------------------------------

@st.composite
def atom(draw, depth: int) -> list[str]:
    leaf = st.one_of(value_name.map(lambda n: [n]), string.map(lambda s: [s]), number.map(lambda s: [s]),
                     duration.map(lambda s: [s]), st.sampled_from([["true"], ["false"], ["null"]]),
                     bad_number.map(lambda s: [s]))
    if depth <= 0:
        return draw(leaf)
    kind = draw(st.integers(0, 9))
    if kind == 0:  # call
        args = draw(st.lists(expr(depth - 1), max_size=3))
        trailing = [","] if args and draw(st.booleans()) else []
        return flat(draw(value_name), "(", joined(args), trailing, ")")
    if kind == 1:  # list
        items = draw(st.lists(expr(depth - 1), max_size=3))
        trailing = [","] if items and draw(st.booleans()) else []
        return flat("[", joined(items), trailing, "]")
    if kind == 2:  # group
        return flat("(", draw(expr(depth - 1)), ")")
    if kind == 3:  # count(x in L [where C]) or count(L)
        if draw(st.booleans()):
            where = flat("where", draw(expr(depth - 1))) if draw(st.booleans()) else []
            return flat("count", "(", draw(name), "in", draw(arith(depth - 1)), where, ")")
        return flat("count", "(", draw(expr(depth - 1)), ")")
    if kind == 4:  # sum(E [for x in L [where C]])
        tail = []
        if draw(st.booleans()):
            tail = flat("for", draw(name), "in", draw(arith(depth - 1)))
            if draw(st.booleans()):
                tail += flat("where", draw(expr(depth - 1)))
        return flat("sum", "(", draw(expr(depth - 1)), tail, ")")
    return draw(leaf)


@st.composite
def postfix(draw, depth: int) -> list[str]:
    out = draw(atom(depth))
    for _ in range(draw(st.integers(0, 3))):
        if depth > 0 and draw(st.integers(0, 3)) == 0:
            out = flat(out, "[", draw(st.one_of(string.map(lambda s: [s]), expr(depth - 1))), "]")
        else:
            out = flat(out, ".", draw(name))
    return out


@st.composite
def arith(draw, depth: int) -> list[str]:
    def factor():
        return flat(["-"] * draw(st.integers(0, 2)), draw(postfix(depth)))

    out = factor()
    for _ in range(draw(st.integers(0, 2))):
        out = flat(out, draw(st.sampled_from(["+", "-", "*", "/", "%"])), factor())
    return out


@st.composite
def comparison(draw, depth: int) -> list[str]:
    left = draw(arith(depth))
    kind = draw(st.integers(0, 12))
    if kind <= 2:
        return left
    if kind == 3:
        return flat(left, draw(comp_op), draw(arith(depth)))
    if kind <= 8:
        op = draw(st.sampled_from([["in"], ["not", "in"], ["contains"], ["starts", "with"], ["ends", "with"],
                                   ["matches"]]))
        return flat(left, op, draw(arith(depth)))
    return flat(left, draw(st.sampled_from([["is", "set"], ["is", "not", "set"], ["is", "empty"],
                                            ["is", "not", "empty"]])))


@st.composite
def quantifier(draw, depth: int) -> list[str]:
    return flat(draw(st.sampled_from(["any", "all"])), draw(name), "in", draw(arith(depth - 1)), "where",
                draw(expr(depth - 1)))


@st.composite
def expr(draw, depth: int = 2) -> list[str]:
    """or-chain of and-chains of (not*) comparisons; a quantifier only as the last operand."""
    def not_operand():
        return flat(["not"] * draw(st.integers(0, 2)), draw(comparison(depth)))

    ors = []
    for _ in range(draw(st.integers(1, 3))):
        ors.append(joined([not_operand() for _ in range(draw(st.integers(1, 3)))], "and"))
    out = joined(ors, "or")
    if depth > 0 and draw(st.integers(0, 4)) == 0:
        open_ = flat(["not"] * draw(st.integers(0, 1)), draw(quantifier(depth)))
        out = open_ if draw(st.booleans()) else flat(out, draw(st.sampled_from(["and", "or"])), open_)
    return out


# ---- top level --------------------------------------------------------------------------------

@st.composite
def action(draw, depth: int) -> list[str]:
    out = [draw(string)]
    if draw(st.booleans()):
        args = [flat(draw(name), ":", draw(expr(1))) for _ in range(draw(st.integers(0, 3)))]
        trailing = [","] if args and draw(st.booleans()) else []
        out = flat(out, "(", joined(args), trailing, ")")
    return out


@st.composite
def statements(draw, depth: int) -> list[str]:
    out: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        if depth > 0 and draw(st.integers(0, 3)) == 0:
            where = flat("where", draw(expr(1))) if draw(st.booleans()) else []
            out += flat("for", draw(name), "in", draw(arith(1)), where, "{", draw(statements(depth - 1)), "}")
        else:
            out += draw(action(depth))
    return out


@st.composite
def rule(draw) -> list[str]:
    options: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            options += ["disabled"]
        else:
            options += flat("priority", draw(st.sampled_from([[], ["-"], ["+"]])),
                            draw(st.sampled_from(["0", "100", "7", "007", "1.5", "1" * 20])))
    trigger = draw(st.sampled_from(["events", "every", "button"]))
    if trigger == "events":
        when = joined([[draw(string)] for _ in range(draw(st.integers(1, 3)))])
    elif trigger == "every":
        when = flat("every", draw(st.one_of(duration, st.sampled_from(["1.5h", "2days"]))), "in", "folder",
                    draw(string))
    else:
        when = flat("button", draw(string))
    condition = flat("if", draw(expr())) if draw(st.booleans()) else []
    return flat("rule", draw(string), options, "{", "when", when, condition, "then", draw(statements(2)), "}")


@st.composite
def let(draw) -> list[str]:
    if draw(st.booleans()):
        return flat("let", draw(name), "=", draw(expr()))
    params = [[draw(name)] for _ in range(draw(st.integers(0, 3)))]
    trailing = [","] if params and draw(st.booleans()) else []
    return flat("let", draw(name), "(", joined(params), trailing, ")", "=", draw(expr()))


file_tokens = st.lists(st.one_of(rule(), let()), max_size=3).map(lambda items: [t for i in items for t in i])

SOUP = ['"', "(", ")", "[", "]", "{", "}", ",", ".", ":", "=", "==", "!=", "<", "<=", ">", ">=", "-", "+", "*",
        "/", "%", "!", "'", "\\", "1", "1.5", "2h", "1.5h", "3x", "007", "x", "order", "item", "in", "not",
        "is", "set", "empty", "any", "all", "where", "and", "or", "then", "if", "when", "for", "rule", "let",
        "count", "sum", "true", "false", "null", "every", "button", "folder", "priority", "disabled",
        "starts", "with", "ends", "contains", "matches", '"s"', '"Tag Order"', "index", "notset", "andx",
        "letx", "forx", "inx", "\u00a0", "\v", "é", "\x00"]
soup_token = st.one_of(st.sampled_from(SOUP), string, number, duration, name)


@st.composite
def token_soup(draw) -> str:
    prefix = draw(st.sampled_from([[], ["rule", '"r"', "{", "when", '"e"', "if"], ["let", "x", "="],
                                   ["rule", '"r"', "{", "when", '"e"', "then"]]))
    suffix = draw(st.sampled_from([[], ["then", "}"], ["}"]]))
    return draw(layout(prefix + draw(st.lists(soup_token, max_size=12)) + suffix))


@st.composite
def mutated(draw) -> str:
    """A grammar-shaped file with a few tokens deleted, doubled, swapped or replaced."""
    tokens = draw(file_tokens)
    for _ in range(draw(st.integers(1, 3))):
        if not tokens:
            tokens = [draw(soup_token)]
            continue
        i = draw(st.integers(0, len(tokens) - 1))
        how = draw(st.integers(0, 3))
        if how == 0:
            del tokens[i]
        elif how == 1:
            tokens.insert(i, tokens[draw(st.integers(0, len(tokens) - 1))])
        elif how == 2:
            tokens.insert(i, draw(soup_token))
        else:
            tokens[i] = draw(soup_token)
    return draw(layout(tokens))


# ---- tests ------------------------------------------------------------------------------------

REGRESSIONS = [
    # Lark's contextual lexer reads a keyword where no name can stand even when a word follows it
    # (`letx` is `let x`); the fast parser reads whole words and must give these to Lark.
    "letx = 1",
    "let x = a andb",
    'rule "r" { when "e" if a is notset then }',
    'rule "r" { when "e" then forx in l { } }',
    # keyword-like words are names where the grammar takes a name
    'let f(in, is, not,) = order.any.count.in["k"] + item.not',
    'rule "r" { when "e" if x == not and and then }',
    # layout: comments inside two-word operators and rule options, CRLF, a lone CR, form feed
    'rule "r" priority - #c\r\n 5 disabled { when "a" if a starts #x\n with "b" and x is\n#c\nnot empty then }',
    'let x = "a\\"b\\\\c\\n\\t\\u00e9\\d\r" # comment\r then\n\f',
    # numbers and durations next to dots and names: 2h.x and 1.5h are BAD_NUMBERs in both parsers
    "let x = 2h.x + 1.5.x - 007 * 1.50 / 30m % 1.5h + 2days + 0x1 + 99999999999999999d",
    'rule "r" { when every 0x in folder "X" then "A"() "B"(a: 1,) }',
    # a quantifier as the last operand, and where-bodies that end at `where`, `for`, `,` or `)`
    "let x = a or any i in l where b or c and not all j in m where d",
    "let x = [count(any i in l where c where d), sum(any i in l where c for y in m), (all i in l where b)]",
    # texts only Lark may judge
    "let x = a == b == c", "let x = true(1)", "let x = f(1)(2)", "let x = sum()", "let x = 1\v", "\ufefflet x = 1",
]


@pytest.mark.parametrize("text", REGRESSIONS)
def test_regressions(text):
    check(text)


@fuzz(50)
@given(st.data())
def test_grammar_shaped_files_are_read_as_lark_reads_them(data):
    text = data.draw(file_tokens.flatmap(layout))
    # the generator writes valid files only (so the comparison has teeth): Lark takes every one
    assert lark_accepts(text), text
    event("fast parser took it" if check(text) else "fast parser gave it to Lark")


@fuzz(50)
@given(mutated())
def test_mutated_files_are_read_as_lark_reads_them_or_given_to_lark(text):
    check(text)


@fuzz(200)
@given(token_soup())
def test_token_soup_is_read_as_lark_reads_it_or_given_to_lark(text):
    check(text)
