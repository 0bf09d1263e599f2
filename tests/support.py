"""Helpers shared by the test modules (the one module tests import from; test files never import each other)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_CASES = Path(__file__).parent / "engine" / "lang" / "cases"
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def fixed_clock() -> dt.datetime:
    return NOW


def load_cases(folder: Path = LANGUAGE_CASES, separator: str = "::") -> list[tuple[str, dict[str, Any]]]:
    """The YAML cases of ``folder`` (each file a list of cases with a ``name``) as (id, case) pairs;
    by default the language conformance cases (tests/engine/lang/cases/*.yaml)."""
    yaml = YAML(typ="safe")
    cases = []
    for path in sorted(folder.glob("*.yaml")):
        for case in yaml.load(path.read_text(encoding="utf-8")):
            cases.append((f"{path.stem}{separator}{case['name']}", case))
    return cases


CASES = load_cases()


def expected_actions(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Every action expectation of a case, from ``actions`` and from ``decisions``."""
    found = list(case.get("actions") or [])
    for entry in case.get("decisions") or []:
        if isinstance(entry, dict):
            found.extend(entry.get("actions") or [])
    return found


# --- the fast parser against Lark (tests/grammar/test_fastparse*.py) ---------------------------------


def ast_dump(value: Any) -> Any:
    """Everything in a tree, locations and raw text included (AST equality leaves them out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,) + tuple(ast_dump(getattr(value, f.name)) for f in dataclasses.fields(value)
                                               if f.name != "source")
    if isinstance(value, (tuple, list)):
        return tuple(ast_dump(v) for v in value)
    return (type(value).__name__, value)


def fast_reading(text: str) -> tuple | None:
    """(items, comments, diagnostics) as the fast parser reads ``text``, or None when it gives the
    text to Lark."""
    from ruledesk.grammar.fastparse import Bail, FastParser
    from ruledesk.grammar.transformer import ASTBuilder

    builder = ASTBuilder()
    builder.path = "f.rules"
    try:
        items, comments = FastParser(builder).parse(text)
    except (Bail, RecursionError):
        return None
    return ast_dump(items), ast_dump(comments), [dataclasses.astuple(d) for d in builder.diagnostics.items]


def lark_reading(text: str) -> tuple:
    """(items, comments, diagnostics) as Lark reads ``text``."""
    from ruledesk.grammar.diagnostics import Diagnostics
    from ruledesk.grammar.parser import parse_with_lark

    diagnostics = Diagnostics()
    module = parse_with_lark(text, "f.rules", diagnostics)
    return ast_dump(module.items), ast_dump(module.comments), [dataclasses.astuple(d) for d in diagnostics.items]

