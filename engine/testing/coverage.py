"""Rule and clause coverage of a ruleset over the decisions of a test run (``ruledesk test --coverage``).

Definitions (docs/testing.md, "Coverage"):

- A *counted rule* is an enabled rule: triggered by events, by a button (a case with
  `button:`) or by a schedule (a case with `schedule:`).  Disabled rules never run, so they are
  listed as excluded and left out of every number.  A counted rule is *covered* when some case
  fired it (on any event of the case's cascade).
- A *clause* is an atomic boolean test written in the condition of a counted rule: a comparison
  (`== != < <= > >= in not in contains starts with ends with matches`), a test (`is set`,
  `is empty`, ...), a quantifier (`any`/`all`), a call of a boolean `let` predicate, or a boolean
  `let` value used by name; the clauses inside a `where` are clauses too.  `and`, `or`, `not` are
  not clauses of their own: with short-circuit evaluation, once every clause under them was seen
  true and seen false, so were they.  A clause inside a `let` body belongs to the let: it is
  counted once, whichever rules use it, and lists under ``let NAME``.
- Each clause has two *outcomes*, true and false; an outcome is covered when some case's trace
  saw the clause evaluate to it (for a clause under a quantifier, for some element).
- rule % = covered rules / counted rules; clause % = covered outcomes / (2 x clauses);
  total % = (covered rules + covered outcomes) / (counted rules + 2 x clauses).  With nothing
  to count, a percentage is 100.  ``--fail-under`` compares the total.  Shown percentages are
  rounded down to one decimal, so 100.0% always means everything is covered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ruledesk.grammar import ast
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.engine.lang.compiler import CompiledRule
from ruledesk.engine.run.engine import Decision, default_actions, default_events
from ruledesk.grammar.ast import source_text
from ruledesk.engine.run.explain import clause_results
from ruledesk.engine.lang.ruleset import Ruleset, check_sources

_BOOLEAN_NODES = (ast.Compare, ast.Test, ast.Quantifier, ast.BoolOp, ast.Not, ast.BoolLit)


@dataclass(frozen=True)
class ClauseCoverage:
    loc: ast.Loc
    text: str
    owner: str  # 'rule "NAME"' or 'let NAME'
    seen: frozenset[bool]

    @property
    def covered(self) -> int:
        return len(self.seen)

    @property
    def missing(self) -> str:
        """What was never seen: "never evaluated", "never true", "never false" or ""."""
        if not self.seen:
            return "never evaluated"
        if len(self.seen) == 2:
            return ""
        return "never false" if True in self.seen else "never true"

    def to_json(self) -> dict[str, Any]:
        return {"at": str(self.loc), "clause": self.text, "owner": self.owner,
                "seen_true": True in self.seen, "seen_false": False in self.seen}


@dataclass
class RuleCoverage:
    name: str
    loc: ast.Loc
    fired: bool
    clauses: list[ClauseCoverage] = field(default_factory=list)


@dataclass
class LetCoverage:
    name: str
    loc: ast.Loc
    clauses: list[ClauseCoverage] = field(default_factory=list)


@dataclass(frozen=True)
class Excluded:
    name: str
    loc: ast.Loc
    reason: str  # "disabled"


@dataclass
class Coverage:
    rules: list[RuleCoverage]
    lets: list[LetCoverage]
    excluded: list[Excluded]

    # ---- counts --------------------------------------------------------------------------------
    @property
    def clauses(self) -> list[ClauseCoverage]:
        return [c for r in self.rules for c in r.clauses] + [c for let in self.lets for c in let.clauses]

    @property
    def rules_fired(self) -> int:
        return sum(r.fired for r in self.rules)

    @property
    def outcomes_covered(self) -> int:
        return sum(c.covered for c in self.clauses)

    @property
    def outcomes_total(self) -> int:
        return 2 * len(self.clauses)

    @property
    def covered(self) -> int:
        return self.rules_fired + self.outcomes_covered

    @property
    def total(self) -> int:
        return len(self.rules) + self.outcomes_total

    @property
    def rule_percent(self) -> float:
        return percent(self.rules_fired, len(self.rules))

    @property
    def clause_percent(self) -> float:
        return percent(self.outcomes_covered, self.outcomes_total)

    @property
    def total_percent(self) -> float:
        return percent(self.covered, self.total)

    def meets(self, minimum: float) -> bool:
        """Whether the total coverage is at least ``minimum`` percent (compared exactly, not rounded)."""
        return self.total == 0 or self.covered * 100 >= minimum * self.total

    def not_fired(self) -> list[RuleCoverage]:
        return [r for r in self.rules if not r.fired]

    def uncovered(self) -> list[ClauseCoverage]:
        return [c for c in self.clauses if c.covered < 2]

    # ---- output --------------------------------------------------------------------------------
    def by_file(self) -> list[dict[str, Any]]:
        files: dict[str, dict[str, int]] = {}

        def row(file: str) -> dict[str, int]:
            return files.setdefault(file, {"rules": 0, "fired": 0, "outcomes": 0, "covered": 0})

        for rule in self.rules:
            entry = row(rule.loc.file)
            entry["rules"] += 1
            entry["fired"] += rule.fired
        for clause in self.clauses:
            entry = row(clause.loc.file)
            entry["outcomes"] += 2
            entry["covered"] += clause.covered
        return [{"file": file, **counts,
                 "percent": percent(counts["fired"] + counts["covered"], counts["rules"] + counts["outcomes"])}
                for file, counts in sorted(files.items())]

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": {"total": len(self.rules), "fired": self.rules_fired, "percent": self.rule_percent},
            "clauses": {"total": len(self.clauses), "outcomes": self.outcomes_total,
                        "covered": self.outcomes_covered, "percent": self.clause_percent},
            "total": {"items": self.total, "covered": self.covered, "percent": self.total_percent},
            "files": self.by_file(),
            "not_fired": [{"rule": r.name, "at": str(r.loc)} for r in self.not_fired()],
            "uncovered_clauses": [{**c.to_json(), "missing": c.missing} for c in self.uncovered()],
            "excluded": [{"rule": e.name, "at": str(e.loc), "reason": e.reason} for e in self.excluded],
        }

    def format(self) -> str:
        """The terminal report: a table per rule file, then what no case covered."""
        header = ("file", "rules fired", "clause outcomes", "cover")
        rows = [(r["file"], f"{r['fired']}/{r['rules']}", f"{r['covered']}/{r['outcomes']}", f"{r['percent']:.1f}%")
                for r in self.by_file()]
        rows.append(("total", f"{self.rules_fired}/{len(self.rules)}",
                     f"{self.outcomes_covered}/{self.outcomes_total}", f"{self.total_percent:.1f}%"))
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                             for i, cell in enumerate(cells)).rstrip()

        out = [f"coverage: rules {self.rule_percent:.1f}%, clause outcomes {self.clause_percent:.1f}%, "
               f"total {self.total_percent:.1f}%", line(header), line(tuple("-" * w for w in widths))]
        out += [line(row) for row in rows[:-1]]
        out += [line(tuple("-" * w for w in widths)), line(rows[-1])]
        if self.not_fired():
            out.append("rules no case fired:")
            out += [f"  {r.loc}  {_quote(r.name)}" for r in self.not_fired()]
        if self.uncovered():
            out.append("clauses not covered:")
            out += [f"  {c.loc}  {c.text}  {c.missing}  ({c.owner})" for c in self.uncovered()]
        if self.excluded:
            out.append("not counted (disabled): "
                       + ", ".join(_quote(e.name) for e in self.excluded))
        return "\n".join(out)


def percent(covered: int, total: int) -> float:
    """``covered / total`` in percent, rounded down to one decimal; 100.0 when there is nothing to count."""
    if total == 0:
        return 100.0
    return math.floor(1000 * covered / total) / 10


def _quote(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


# ---- measuring -----------------------------------------------------------------------------------


def measure(ruleset: Ruleset, decisions: Iterable[Decision], *, events: Catalogue[EventSpec] | None = None,
            actions: Catalogue[ActionSpec] | None = None) -> Coverage:
    """Coverage of ``ruleset`` over ``decisions`` (recorded with explain="full" for clause coverage)."""
    events = events if events is not None else default_events()
    actions = actions if actions is not None else default_actions()
    lets = check_sources(ruleset.sources, events, actions)[0].lets
    fired: set[str] = set()
    seen: dict[ast.Loc, set[bool]] = {}
    for decision in decisions:
        fired.update(decision.fired)
        for outcome in decision.outcomes:
            for loc, (_, results) in clause_results(outcome).items():
                seen.setdefault(loc, set()).update(results)

    def clause(node: ast.Expr, owner: str) -> ClauseCoverage:
        return ClauseCoverage(node.loc, source_text(node, ruleset.sources), owner, frozenset(seen.get(node.loc, ())))

    counted: list[CompiledRule] = []
    excluded: list[Excluded] = []
    for rule in ruleset.rules:
        reason = _exclusion(rule)
        if reason:
            excluded.append(Excluded(rule.name, rule.loc, reason))
        else:
            counted.append(rule)

    rules = [RuleCoverage(rule.name, rule.loc, rule.name in fired,
                          [clause(n, f'rule {_quote(rule.name)}') for n in clause_nodes(rule.node.condition, lets)])
             for rule in counted]
    used: dict[str, ast.Let] = {}
    for rule in counted:
        _used_lets(rule.node.condition, lets, used)
    let_coverage = [LetCoverage(let.name, let.loc, [clause(n, f"let {let.name}") for n in clause_nodes(let.body, lets)])
                    for let in sorted(used.values(), key=lambda let: let.loc)]
    return Coverage(rules, [let for let in let_coverage if let.clauses], excluded)


def _exclusion(rule: CompiledRule) -> str:
    return "disabled" if rule.disabled else ""


def clause_nodes(expr: ast.Expr | None, lets: dict[str, ast.Let]) -> list[ast.Expr]:
    """The clauses (see the module docstring) written in ``expr``, in source order; let bodies are not entered."""
    if expr is None:
        return []
    found: list[ast.Expr] = []
    for node in ast.walk(expr):
        if isinstance(node, (ast.Compare, ast.Test, ast.Quantifier)):
            found.append(node)
        elif isinstance(node, ast.Call) and _boolean_let(lets.get(node.func), lets, wants_params=True):
            found.append(node)
        elif isinstance(node, ast.Name) and _boolean_let(lets.get(node.id), lets, wants_params=False):
            found.append(node)
    return sorted(found, key=lambda n: n.loc)


def _boolean_let(let: ast.Let | None, lets: dict[str, ast.Let], wants_params: bool,
                 seen: frozenset[str] = frozenset()) -> bool:
    if let is None or (let.params is not None) != wants_params or let.name in seen:
        return False
    return _is_boolean(let.body, lets, seen | {let.name})


def _is_boolean(expr: ast.Expr, lets: dict[str, ast.Let], seen: frozenset[str] = frozenset()) -> bool:
    if isinstance(expr, _BOOLEAN_NODES):
        return True
    if isinstance(expr, ast.Call):
        return _boolean_let(lets.get(expr.func), lets, True, seen)
    if isinstance(expr, ast.Name):
        return _boolean_let(lets.get(expr.id), lets, False, seen)
    return False


def _used_lets(expr: ast.Expr | None, lets: dict[str, ast.Let], used: dict[str, ast.Let]) -> None:
    """Every let ``expr`` refers to, directly or through other lets."""
    if expr is None:
        return
    for node in ast.walk(expr):
        name = node.func if isinstance(node, ast.Call) else node.id if isinstance(node, ast.Name) else None
        let = lets.get(name) if name is not None else None
        if let is not None and let.name not in used:
            used[let.name] = let
            _used_lets(let.body, lets, used)


__all__ = ["ClauseCoverage", "Coverage", "Excluded", "LetCoverage", "RuleCoverage", "clause_nodes", "measure",
           "percent"]
