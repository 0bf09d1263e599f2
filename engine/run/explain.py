"""Why a rule did or did not fire: deciding clauses (always recorded) and full traces (on request)."""

from __future__ import annotations

import datetime as _dt
import decimal
import json
from dataclasses import dataclass, field
from typing import Any

from ruledesk.grammar import ast
from ruledesk.grammar.ast import source_text
from ruledesk.engine.lang.compiler import CompiledRule
from ruledesk.engine.lang.patterns import LinearPattern

# Explanation levels an Engine can record.
OFF, DECIDING, FULL = "off", "deciding", "full"
LEVELS = (OFF, DECIDING, FULL)


@dataclass
class TraceEntry:
    """One value a traced condition computed: ``node`` (an index into the rule's trace nodes)."""

    node: int
    value: Any
    element: Any = None
    is_element: bool = False


class Recorder:
    """The ``tr``/``tq`` callbacks a traced condition calls; collects entries in evaluation order."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[TraceEntry] = []

    def value(self, node: int, value: Any) -> Any:
        self.entries.append(TraceEntry(node, value))
        return value

    def element(self, node: int, element: Any, result: Any) -> Any:
        self.entries.append(TraceEntry(node, result, element, True))
        return result


@dataclass
class RuleOutcome:
    """How one rule of an event came out, in evaluation order."""

    rule: CompiledRule
    fired: bool
    clause: int | None = None  # index of the deciding top-level clause when it did not fire
    values: tuple = ()  # the values that clause compared
    trace: list[TraceEntry] | None = None
    note: str | None = None  # e.g. why it was not evaluated at all

    @property
    def evaluated(self) -> bool:
        return self.note is None

    def clause_node(self) -> ast.Expr | None:
        cond = self.rule.node.condition
        if cond is None or self.clause is None:
            return None
        parts = cond.operands if isinstance(cond, ast.BoolOp) and cond.op == "and" else (cond,)
        return parts[self.clause]

    def to_json(self, sources: dict[str, str]) -> dict[str, Any]:
        data: dict[str, Any] = {"rule": self.rule.name, "fired": self.fired}
        if self.note:
            data["note"] = self.note
        node = self.clause_node()
        if node is not None:
            data["at"] = str(node.loc)
            data["clause"] = source_text(node, sources)
            data["compared"] = compared_text(node, self.values, sources)
        if self.trace is not None:
            data["trace"] = trace_lines(self, sources)
        return data


# ---- rendering ---------------------------------------------------------------------------

def render_value(value: Any, limit: int = 80) -> str:
    """A value as a rule author would write it: JSON-like, strings quoted, null, exact decimals."""
    text = _render(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Rendered(str):
    """A value already written as a rule author would write it (from a stored explanation)."""


def _render(value: Any) -> str:
    if value.__class__ is Rendered:
        return str.__str__(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, _dt.datetime):
        return f'date("{value.strftime("%Y-%m-%d %H:%M:%S")}")'
    if isinstance(value, _dt.timedelta):
        return _duration(value)
    if isinstance(value, LinearPattern):
        return f'"{value.pattern}"'  # as written in the rule: backslashes are not escapes there
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "[" + ", ".join(sorted(_render(v) for v in value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in value.items() if v not in (None, "", [], {})) + "}"
    return repr(value)


def _duration(delta: _dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def compared_text(node: ast.Expr, values: tuple, sources: dict[str, str]) -> str:
    """``"FR" in ["US", "CA", "GB"]`` for a deciding clause and the values it compared."""
    if isinstance(node, ast.Compare) and len(values) == 2:
        left, right = values
        if isinstance(right, (set, frozenset)):
            right = _literal_list(node.right) or right
        return f"{render_value(left)} {node.op} {render_value(right)}"
    if isinstance(node, ast.Test) and len(values) == 1:
        return f"{render_value(values[0])} {node.op}"
    return source_text(node, sources)


def _literal_list(node: ast.Expr) -> list | None:
    if isinstance(node, ast.ListLit):
        return [getattr(item, "value", None) for item in node.items]
    return None


def deciding_line(outcome: RuleOutcome, sources: dict[str, str]) -> str:
    """``file:line:col  clause  ->  compared values  ->  false``."""
    node = outcome.clause_node()
    if node is None:
        return ""
    text, compared = source_text(node, sources), compared_text(node, outcome.values, sources)
    if compared == text:
        return f"{node.loc}  {text}  ->  false"
    return f"{node.loc}  {text}  ->  {compared}  ->  false"


def explain_lines(outcomes: list[RuleOutcome], sources: dict[str, str], full: bool = False) -> list[str]:
    """Every rule of the event, in evaluation order: fired, or the clause that decided it did not."""
    lines: list[str] = []
    for outcome in outcomes:
        rule = outcome.rule
        if outcome.note:
            lines.append(f"  -  {rule.name}  ({outcome.note})")
        elif outcome.fired:
            lines.append(f"  ✓  {rule.name}  fired")
        else:
            lines.append(f"  ✗  {rule.name}  did not fire")
            line = deciding_line(outcome, sources)
            if line:
                lines.append(f"       {line}")
        if full and outcome.trace is not None:
            lines.extend("       " + line for line in trace_lines(outcome, sources))
    return lines


# ---- full traces -------------------------------------------------------------------------

@dataclass
class _TraceItem:
    entry: TraceEntry
    depth: int
    children: list["_TraceItem"] = field(default_factory=list)


def trace_tree(outcome: RuleOutcome) -> list[_TraceItem]:
    """Rebuild the evaluation tree from the post-order entries, using each node's depth."""
    nodes = outcome.rule.trace_nodes.nodes if outcome.rule.trace_nodes else []
    stack: list[_TraceItem] = []
    for entry in outcome.trace or ():
        depth = nodes[entry.node][1]
        item = _TraceItem(entry, depth)
        while stack and stack[-1].depth > depth:
            item.children.insert(0, stack.pop())
        stack.append(item)
    return stack


def trace_lines(outcome: RuleOutcome, sources: dict[str, str]) -> list[str]:
    """Every value the condition computed, as an indented tree; quantifiers say which element decided."""
    nodes = outcome.rule.trace_nodes.nodes if outcome.rule.trace_nodes else []
    lines: list[str] = []

    def emit(item: _TraceItem, indent: int) -> None:
        node, _, kind = nodes[item.entry.node]
        pad = "  " * indent
        if kind == "element":
            lines.append(f"{pad}{_element_label(item.entry.element)}  ->  {render_value(item.entry.value)}")
        else:
            note = _decided_by(node, item) if isinstance(node, (ast.Quantifier, ast.Count)) else ""
            lines.append(f"{pad}{node.loc}  {source_text(node, sources)}  ->  {render_value(item.entry.value)}{note}")
        for child in item.children:
            emit(child, indent + 1)

    for root in trace_tree(outcome):
        emit(root, 0)
    return lines


def _element_label(element: Any) -> str:
    if isinstance(element, dict):
        for key in ("code", "id", "name"):
            if element.get(key) not in (None, ""):
                return f"element {key}={render_value(element[key])}"
    return f"element {render_value(element, 40)}"


def _decided_by(node: ast.Expr, item: _TraceItem) -> str:
    elements = [c for c in item.children if c.entry.is_element]
    if isinstance(node, ast.Count) and node.cond is None:
        return ""
    if isinstance(node, ast.Count):
        return f"  ({sum(1 for c in elements if c.entry.value)} of {len(elements)} elements matched)"
    if node.kind == "any":
        hit = next((i for i, c in enumerate(elements) if c.entry.value), None)
        return (f"  (decided by element #{hit + 1})" if hit is not None
                else f"  (no element matched, {len(elements)} looked at)")
    miss = next((i for i, c in enumerate(elements) if not c.entry.value), None)
    return (f"  (decided by element #{miss + 1})" if miss is not None
            else f"  (all {len(elements)} elements matched)")


# ---- clause coverage -------------------------------------------------------------------

_CLAUSE_NODES = (ast.Compare, ast.Test, ast.Quantifier, ast.BoolOp, ast.Not, ast.Call, ast.Name, ast.BoolLit)


def clause_results(outcome: RuleOutcome) -> dict[ast.Loc, tuple[ast.Expr, set[bool]]]:
    """For a traced outcome: every boolean clause the condition evaluated, with the results seen.

    Clauses are the condition's boolean subexpressions (comparisons, tests, quantifiers, `and`,
    `or`, `not`, let predicates), keyed by their location, so a clause inside a quantifier
    collects the results of every element.  A clause short-circuiting skipped has no entry."""
    nodes = outcome.rule.trace_nodes.nodes if outcome.rule.trace_nodes else []
    results: dict[ast.Loc, tuple[ast.Expr, set[bool]]] = {}
    for entry in outcome.trace or ():
        node, _, kind = nodes[entry.node]
        if kind != "value" or not isinstance(node, _CLAUSE_NODES) or not isinstance(entry.value, bool):
            continue
        results.setdefault(node.loc, (node, set()))[1].add(entry.value)
    return results


def condition_clauses(rule: CompiledRule) -> list[ast.Expr]:
    """The boolean clauses of a rule's condition as written (let bodies not expanded), in source order."""
    cond = rule.node.condition
    if cond is None:
        return []
    found = []
    for node in ast.walk(cond):
        if isinstance(node, (ast.Compare, ast.Test, ast.Quantifier, ast.BoolOp, ast.Not)):
            found.append(node)
        elif isinstance(node, ast.Call) and node.func not in ast.BUILTIN_FUNCTIONS:
            found.append(node)  # a let predicate
    return found
