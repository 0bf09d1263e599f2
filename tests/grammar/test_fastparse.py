"""The fast parser (grammar/fastparse.py) reads every text it takes exactly as Lark does: the same
tree with the same locations and raw text, the same comments, the same diagnostics; texts it does
not take go to Lark.  Compared on every rule text of the test suite and on mutations of them."""

from __future__ import annotations

import ast as pyast
import importlib.util
import random
import re

import pytest
from ruamel.yaml import YAML

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostics
from ruledesk.grammar.parser import parse, parse_with_lark
from support import ROOT
from support import ast_dump as dump
from support import fast_reading as fast
from support import lark_reading as lark


def _texts_in_yaml(value, found):
    if isinstance(value, dict):
        for item in value.values():
            _texts_in_yaml(item, found)
    elif isinstance(value, list):
        for item in value:
            _texts_in_yaml(item, found)
    elif isinstance(value, str) and ("rule" in value or "let" in value):
        found.append(value)


def corpus() -> list[str]:
    found: list[str] = []
    for path in sorted(ROOT.glob("**/*.rules")):
        if ".venv" not in path.parts:
            found.append(path.read_text(encoding="utf-8"))
    yaml = YAML(typ="safe")
    for path in sorted((ROOT / "tests").glob("**/*.yaml")):
        _texts_in_yaml(yaml.load(path.read_text(encoding="utf-8")), found)
    for path in sorted((ROOT / "tests").glob("**/*.py")):
        for node in pyast.walk(pyast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, pyast.Constant) and isinstance(node.value, str) and re.search(r"\b(rule|let)\b", node.value):
                found.append(node.value)
    spec = importlib.util.spec_from_file_location("_bench_workload", ROOT / "bench" / "workload.py")
    workload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workload)
    found.append(workload.rules_text(workload.make_rule_specs(100, 1)))
    return found


def same_or_bail(text: str) -> bool:
    """True when the fast parser took the text (and read it as Lark did)."""
    got = fast(text)
    if got is None:
        return False
    assert got == lark(text), text
    return True


CORPUS = corpus()


def test_the_fast_parser_takes_the_valid_corpus_and_reads_it_as_lark_does():
    taken = sum(same_or_bail(text) for text in CORPUS)
    assert len(CORPUS) > 300 and taken > len(CORPUS) // 2


_PIECES = ['"', "(", ")", "[", "]", "{", "}", ",", ".", ":", "=", "==", "-", "+", "*", "/", "%", "<", "#x\n",
           "\n", " ", "1", "1.5", "2h", "1.5h", "3x", "x", "in", "not", "is", "set", "empty", "any", "all",
           "where", "and", "or", "then", "if", "when", "for", "rule", "let", "count", "sum", "true", "null",
           "every", "button", "folder", "priority", "disabled", "starts", "with", "ends", "contains",
           "matches", '"s"', "index", "notx", "9999999999999999999d", "-5"]


def mutants(text: str, rng: random.Random, n: int):
    tokens = re.findall(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_0-9.]+|\s+|#[^\n]*|.', text)
    for _ in range(n):
        copy = list(tokens)
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(copy) + 1)
            choice = rng.random()
            if choice < 0.35 and copy:
                del copy[min(where, len(copy) - 1)]
            elif choice < 0.7:
                copy.insert(where, rng.choice(_PIECES))
            elif copy:
                copy.insert(where, copy[rng.randrange(len(copy))])
        yield "".join(copy)


@pytest.mark.parametrize("seed", range(2))
def test_mutated_texts_are_read_as_lark_reads_them_or_given_to_lark(seed):
    rng = random.Random(seed)
    valid = [t for t in CORPUS if len(t) < 3000 and fast(t) is not None]
    for text in rng.sample(valid, 50):
        for mutant in mutants(text, rng, 12):
            same_or_bail(mutant)


def test_parse_reports_lark_s_syntax_errors_and_the_transformer_s_diagnostics_once():
    bad = 'rule "a" { when "Order is Imported" if order.x == then "Tag Order"(name: "t") }'
    d1, d2 = Diagnostics(), Diagnostics()
    parse(bad, "f.rules", d1)
    parse_with_lark(bad, "f.rules", d2)
    assert d1.items == d2.items and d1.items
    odd = 'rule "a" priority 1.5 { when every 1.5h in folder "F" if 1x == 2 then "Tag Order"(name: "t") }'
    d1, d2 = Diagnostics(), Diagnostics()
    assert dump(parse(odd, "f.rules", d1).items) == dump(parse_with_lark(odd, "f.rules", d2).items)
    assert [d.code for d in d1.items] == [d.code for d in d2.items] == ["E404", "E105", "E105"]
    assert fast(odd) is not None
