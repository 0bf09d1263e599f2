"""Checked rules -> Python source -> callables.

Every event gets one generated ``match`` function that reads each order field its rules use
once (into locals) and tests every rule's condition inline, in evaluation order; every rule
also gets its own ``why`` function (used after an action changed the order: None when the
condition holds, else its deciding clause) and an ``act`` function that runs its actions.
``lets`` are expanded in place.  The generated code runs with ``runtime.RUNTIME_NAMESPACE`` as
its only globals; each generated line that stands for rule text ends with ``# file:line:col``,
and per-rule functions are compiled under their rule's location, so tracebacks name the rule.
"""

from __future__ import annotations

import ast as pyast
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ruledesk.grammar import ast
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue
from ruledesk.engine.lang.checker import CheckedRule, CheckResult
from ruledesk.engine.lang.typer import ROOTS, Binding, Scope, Typer
from ruledesk.engine.model import types as T
from ruledesk.engine.lang.codegen import ExprCompiler, TraceNodes, FunctionBuilder, cheap_first
from ruledesk.grammar.diagnostics import Diagnostics
from ruledesk.engine.lang.runtime import RUNTIME_NAMESPACE
from ruledesk.engine.lang.templates import compile_template, is_template



_DEFINE = threading.Lock()


def _compile(source: str, filename: str) -> Any:
    """Compile generated code.  It may compare a literal with ``is`` (``"a" is not None`` when a rule
    tests a literal): correct, so CPython's SyntaxWarning about it is not shown to rule authors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return compile(source, filename, "exec")


class SharedHelpers:
    """The loop helpers (``_loopN``) of the rules' ``why`` functions, each distinct one written once:
    rules that test the same list the same way call one helper.  Defined in the rules' shared
    namespace before the first ``why`` is (one compile for all, on first use like the rest)."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._defined = not source

    def define(self, namespace: dict[str, Any]) -> None:
        if self._defined:
            return
        code = _compile(self.source, "<loop helpers of the rules' why functions>")
        with _DEFINE:
            if not self._defined:
                exec(code, namespace)  # noqa: S102 - generated code
                self._defined = True



@dataclass
class ActionSlot:
    """One action call site of a rule: what ``act`` functions pass to ``Runner.call``."""

    spec: ActionSpec
    node: ast.ActionCall


class CompiledRule:
    """One rule, ready to run.  Its ``condition`` and ``act`` functions are compiled on first use:
    most rules are only ever evaluated through their event's shared ``match`` function."""

    def __init__(self, name: str, priority: int, disabled: bool, loc: ast.Loc, events: tuple[str, ...],
                 trigger: ast.Trigger, node: ast.Rule, order_key: tuple[int, int, int]) -> None:
        self.name = name
        self.priority = priority
        self.disabled = disabled
        self.loc = loc
        self.events = events
        self.trigger = trigger
        self.node = node
        self.order_key = order_key
        self.slots: list[ActionSlot] = []
        self.trace_nodes: TraceNodes | None = None  # set when compiled with trace support
        self._sources: dict[str, str] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        self._namespace: dict[str, Any] = {}
        self._helpers = SharedHelpers()
        self._later: Callable[[], str] | None = None  # writes the `why` source when first asked for
        self._constant_calls: tuple | None = None  # see _constant_calls: `act` without generated code

    def __repr__(self) -> str:
        return f"<CompiledRule {self.name!r} at {self.loc}>"

    def _source(self, kind: str) -> str:
        source = self._sources.get(kind)
        if source is None and kind == "why" and self._later is not None:
            source = self._sources[kind] = self._later()
        return self._sources[kind]

    def _function(self, kind: str) -> Callable[..., Any]:
        fn = self._functions.get(kind)
        if fn is None and kind == "act" and self._constant_calls is not None:
            fn = self._functions[kind] = _constant_act(self._constant_calls)
        if fn is None:
            if kind == "why":
                self._helpers.define(self._namespace)
            filename = f"{self.loc.file}:{self.loc.line} (rule {self.name!r})"
            code = _compile(self._source(kind), filename)
            # Every rule's `why`/`act` is defined under the same name in the shared namespace (its
            # helpers and constants live there): define and take it in one step, one thread at a time.
            with _DEFINE:
                fn = self._functions.get(kind)
                if fn is None:
                    exec(code, self._namespace)  # noqa: S102 - generated code
                    fn = self._functions[kind] = self._namespace[kind]
        return fn

    def warm(self) -> None:
        """Compile every function of this rule the engine may call now (see ``Ruleset.warm``):
        ``act``, and with trace support ``trace`` and ``why`` (only a full explanation evaluates a
        rule on its own; otherwise its event's match functions do)."""
        for kind in self._sources:
            if kind != "why" or "trace" in self._sources:
                self._function(kind)

    @property
    def why(self) -> Callable[..., Any]:
        """``(order, event, store, now) -> None`` when the condition holds, else its deciding clause
        as ``(clause index, *values compared)``."""
        return self._function("why")

    @property
    def trace(self) -> Callable[..., Any]:
        """``(order, event, store, now, tr, tq) -> bool``, calling back for every value (see ExprCompiler)."""
        if "trace" not in self._sources:
            raise RuntimeError("this ruleset was built without trace support (build_ruleset(..., trace=True))")
        return self._function("trace")

    @property
    def act(self) -> Callable[..., Any]:
        """``(run, order, event, store, now) -> None``: runs the actions through ``run.call``."""
        return self._function("act")

    def source(self, kind: str) -> str:
        return self._source(kind)


@dataclass
class EventPlan:
    """The enabled rules of one event, in evaluation order, and their shared matcher."""

    event: str
    rules: tuple[CompiledRule, ...]
    match: Callable[..., list[int]]  # (order, event, store, now) -> indexes of rules whose condition holds
    source: str = ""
    why_source: str = ""
    namespace: dict[str, Any] = field(default_factory=dict, repr=False)
    uses_now: bool = True  # some rule of the event calls now(): the engine reads its clock only then
    names: tuple[str, ...] = ()  # the rules' names, by position
    reads: frozenset[str] | None = None  # the order's top-level fields the conditions read (None: any)
    # The values a deciding clause compared, recomputed on demand from match_why's snapshot:
    # (rule position, clause index) -> the statements and the expression that give them.
    value_sources: dict[tuple[int, int], tuple[list[str], str]] = field(default_factory=dict, repr=False)
    snapshot_names: tuple[str, ...] = ()
    # By position: the written index of the clause a rule is indexed by (its first clause, an
    # equality or membership test against constants), or None.  A rule the index skipped is in
    # neither the fired list nor ``missed``: that clause was false, and is its deciding clause.
    index_clauses: tuple[int | None, ...] = ()
    _match_why: Callable[..., Any] | None = field(default=None, repr=False)
    _value_functions: dict[tuple[int, int], Callable[..., tuple]] = field(default_factory=dict, repr=False)
    _value_bodies: dict[tuple, Callable[..., tuple]] = field(default_factory=dict, repr=False)
    _why_scope: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def match_why(self) -> Callable[..., tuple[list[int], dict[int, int], tuple]]:
        """``(order, event, store, now) -> (fired, missed, snapshot)``: like ``match``, and for every
        rule that did not fire, ``missed[i]`` = the index of its deciding clause.  The values that
        clause compared are not built then (most are never read): ``values(i, clause, snapshot, ...)``
        recomputes them from ``snapshot``, the field reads and aggregates the match made.
        Compiled on first use."""
        fn = self._match_why
        if fn is None:
            code = _compile(self.why_source, f"<match_why {self.event!r}>")
            with _DEFINE:  # like the rules' functions: one definition, whichever thread asks first
                fn = self._match_why
                if fn is None:
                    scope = dict(self.namespace)
                    exec(code, scope)  # noqa: S102 - generated code
                    self._why_scope = scope
                    fn = self._match_why = scope["match_why"]
        return fn

    def warm(self) -> None:
        """Compile ``match_why`` and every deciding clause's value function now (see ``Ruleset.warm``)."""
        for position, clause in self.value_sources:
            self._value_function(position, clause)
        self.match_why  # noqa: B018 - a plan whose rules have no conditions has no value functions

    def deciding(self, position: int, missed: dict[int, int]) -> int:
        """The deciding clause of rule ``position``, which match_why did not fire (see ``index_clauses``)."""
        clause = missed.get(position)
        return self.index_clauses[position] if clause is None else clause

    def values(self, position: int, clause: int, snapshot: tuple, order: dict, event: dict, store: dict) -> tuple:
        """The values the deciding clause ``clause`` of rule ``position`` compared, from a match_why snapshot."""
        return self._value_function(position, clause)(*snapshot, order, event, store)

    def _value_function(self, position: int, clause: int) -> Callable[..., tuple]:
        key = (position, clause)
        fn = self._value_functions.get(key)
        if fn is None:
            setup, values = self.value_sources[key]
            body = (tuple(setup), values)
            fn = self._value_bodies.get(body)  # many clauses compare the same things: one function each
            if fn is None and not setup:
                fn = self._value_bodies[body] = _picker(values, self.snapshot_names, self.namespace) or None
            if fn is None:
                params = ", ".join(self.snapshot_names + ("order", "event", "store"))
                name = f"values_{position}_{clause}"
                source = "\n".join([f"def {name}({params}):"] + [f"    {line}" for line in setup]
                                    + [f"    return ({values})"]) + "\n"
                code = _compile(source, f"<values {self.names[position]!r}>")
                self.match_why  # noqa: B018 - compiles match_why, whose helpers (loops over lists) these use
                with _DEFINE:
                    exec(code, self._why_scope)  # noqa: S102 - generated code
                    fn = self._value_bodies.setdefault(body, self._why_scope[name])
            self._value_functions[key] = fn
        return fn


class _Later:
    """A rule's ``why`` source, written on first use (by the compiler that compiled the rule, under a
    lock: it shares the compiler's state); the constants and loop helpers it adds are defined then."""

    _lock = threading.Lock()

    def __init__(self, compiler: "Compiler", checked: CheckedRule, rule: CompiledRule) -> None:
        self.compiler, self.checked, self.rule = compiler, checked, rule

    def __call__(self) -> str:
        compiler, rule = self.compiler, self.rule
        with self._lock:
            source = rule._sources.get("why")
            if source is not None:
                return source
            known = set(compiler._why_helpers)
            source = compiler._capture(lambda: compiler._emit_why(self.checked))
            added = "".join(text + "\n" for key, (_, text) in compiler._why_helpers.items() if key not in known)
            rule._helpers.define(rule._namespace)  # the helpers written at build time, before the new ones
            with _DEFINE:
                for name, value in compiler.consts.items():
                    rule._namespace.setdefault(name, value)
                if added:
                    exec(_compile(added, "<loop helpers of the rules' why functions>"), rule._namespace)  # noqa: S102
            return source


_MIN_INDEXED = 4  # rules under one indexed expression before an index pays for itself


@dataclass
class _Index:
    key_of: list[str | None]  # by position: the indexed expression's code, or None
    clauses: Any  # by position: the written index of the indexed clause, or None (a tuple once built)
    dimensions: list[tuple[str, str, list[tuple[int, ...]]]]  # (expression, constant {value: group}, groups)


@dataclass
class CompiledCode:
    rules: list[CompiledRule]
    plans: dict[str, EventPlan]


class Compiler:
    def __init__(self, checked: CheckResult, actions: Catalogue[ActionSpec], trace: bool = False,
                 index: bool = True) -> None:
        self.checked = checked
        self.actions = actions
        self.trace = trace
        self.index = index
        self.consts: dict[str, Any] = {}
        self._const_ids: dict[tuple[type, Any], str] = {}
        self.lines: list[str] = []
        self._sink = Diagnostics()
        self._helper_count = 0
        self._let_fact_cache: dict[str, tuple[bool, frozenset[str] | None]] = {}
        self._loop_conds: dict[tuple, tuple] = {}  # see ExprCompiler._loop_helper
        self._why_helpers: dict[str, tuple[str, str]] = {}  # see SharedHelpers and FunctionBuilder.shared_helpers
        self._order_cache: dict[int, tuple[ast.Expr, list[tuple[int, ast.Expr]]]] = {}
        self._fact_cache: dict[int, tuple[ast.Node, tuple[bool, frozenset[str] | None, frozenset[str]]]] = {}

    def _cheap_first(self, cond: ast.Expr) -> list[tuple[int, ast.Expr]]:
        """``cheap_first(cond)``, worked out once per condition (each is compiled several times)."""
        found = self._order_cache.get(id(cond))
        if found is None or found[0] is not cond:
            found = self._order_cache[id(cond)] = (cond, cheap_first(cond))
        return found[1]

    # ---- constants --------------------------------------------------------------------
    def const(self, value: Any) -> str:
        try:
            key = (type(value), value)
            hash(key)
        except TypeError:
            key = (type(value), id(value))
        name = self._const_ids.get(key)
        if name is None:
            name = f"K{len(self.consts)}"
            self.consts[name] = value
            self._const_ids[key] = name
        return name

    # ---- driver -----------------------------------------------------------------------
    def compile(self) -> CompiledCode:
        ordered = sorted(self.checked.rules, key=lambda r: (-r.rule.priority, r.file_index, r.position))
        compiled: list[CompiledRule] = []
        for index, checked in enumerate(ordered):
            rule = checked.rule
            cr = CompiledRule(rule.name, rule.priority, rule.disabled, rule.loc, checked.events, rule.trigger, rule,
                              (-rule.priority, checked.file_index, checked.position))
            compiled.append(cr)
            if self.trace:
                cr._sources["why"] = self._capture(lambda: self._emit_why(checked))
            else:  # only a full explanation calls a rule's `why`: written when first asked for
                cr._later = _Later(self, checked, cr)
            if self.trace:
                cr.trace_nodes = TraceNodes()
                cr._sources["trace"] = self._capture(lambda: self._emit_trace(checked, cr.trace_nodes))
            cr._sources["act"] = self._capture(lambda: self._emit_actions(checked, cr))
        by_event: dict[str, list[int]] = {}
        for index, cr in enumerate(compiled):
            if cr.disabled:
                continue
            for name in cr.events or trigger_keys(cr):
                by_event.setdefault(name, []).append(index)
        namespace = dict(RUNTIME_NAMESPACE)
        namespace.update(self.consts)
        plans: dict[str, EventPlan] = {}
        for event, indexes in by_event.items():
            # One compile() per event keeps the peak memory of CPython's compiler small.
            self.lines = []
            rules = [ordered[i] for i in indexes]
            index_clauses = self._emit_match(rules)
            source = "\n".join(self.lines) + "\n"
            exec(_compile(source, f"<match {event!r}>"), namespace)  # noqa: S102 - generated code
            value_sources: dict[tuple[int, int], tuple[list[str], str]] = {}
            snapshot: list[str] = []
            why_source = self._capture(lambda: snapshot.extend(self._emit_match_why(rules, value_sources)))
            plans[event] = EventPlan(event, tuple(compiled[i] for i in indexes), namespace.pop("match"),
                                     source, why_source, namespace,
                                     value_sources=value_sources, snapshot_names=tuple(snapshot),
                                     index_clauses=index_clauses,
                                     uses_now=any(self._uses_now(r.rule) for r in rules),
                                     reads=self._order_reads(rules), names=tuple(r.rule.name for r in rules))
        namespace.update(self.consts)  # the constants the match functions added
        helpers = SharedHelpers("".join(text + "\n" for _, text in self._why_helpers.values()))
        for cr in compiled:
            cr._namespace = namespace
            cr._helpers = helpers
        return CompiledCode(compiled, plans)

    def _facts(self, node: ast.Node) -> tuple[bool, frozenset[str] | None, frozenset[str]]:
        """One walk over a tree: (calls now() itself, the order fields it reads or None when the whole
        order is passed along, the lets it uses).  Remembered per node: a rule's facts are those of
        its parts, so its condition (which the event's plan asks about again) is walked once."""
        cached = self._fact_cache.get(id(node))
        if cached is not None and cached[0] is node:
            return cached[1]
        if isinstance(node, ast.Rule):
            facts = self._combined_facts([node.trigger, node.condition, *node.actions])
        else:
            facts = self._walk_facts(node)
        self._fact_cache[id(node)] = (node, facts)
        return facts

    def _combined_facts(self, parts: list) -> tuple[bool, frozenset[str] | None, frozenset[str]]:
        uses_now, fields, lets = False, frozenset(), frozenset()
        for part in parts:
            if part is None:
                continue
            part_now, part_fields, part_lets = self._facts(part)
            uses_now = uses_now or part_now
            fields = None if fields is None or part_fields is None else fields | part_fields
            lets = lets | part_lets
        return uses_now, fields, lets

    def _walk_facts(self, node: ast.Node) -> tuple[bool, frozenset[str] | None, frozenset[str]]:
        uses_now, fields, lets = False, set(), set()
        objects = set()  # ids of the names read through: order.x, order["x"]
        whole = False
        known_lets = self.checked.lets
        for sub in ast.walk(node):  # depth-first, a node before its children
            cls = sub.__class__
            if cls is ast.Call:
                uses_now = uses_now or sub.func == "now"
                if sub.func in known_lets:
                    lets.add(sub.func)
            elif cls is ast.Name:
                if sub.id in known_lets:
                    lets.add(sub.id)
                elif sub.id == "order" and id(sub) not in objects:
                    whole = True
            elif (cls is ast.Attr or cls is ast.Index) and sub.obj.__class__ is ast.Name:
                objects.add(id(sub.obj))
                if sub.obj.id == "order":
                    key = sub.name if cls is ast.Attr else getattr(sub.key, "value", None)
                    if isinstance(key, str):
                        fields.add(key)
                    else:
                        whole = True
        return uses_now, None if whole else frozenset(fields), frozenset(lets)

    def _let_facts(self, name: str) -> tuple[bool, frozenset[str] | None]:
        """Whether a let (through the lets it uses) calls now(), and the order fields it reads."""
        cached = self._let_fact_cache.get(name)
        if cached is not None:
            return cached
        self._let_fact_cache[name] = (False, frozenset())  # a cycle (a check error) ends here
        uses_now, fields, lets = self._facts(self.checked.lets[name].body)
        for other in lets:
            other_now, other_fields = self._let_facts(other)
            uses_now = uses_now or other_now
            fields = None if fields is None or other_fields is None else fields | other_fields
        self._let_fact_cache[name] = (uses_now, fields)
        return uses_now, fields

    def _uses_now(self, rule: ast.Rule) -> bool:
        """Whether a rule (its condition or its actions) calls now(), directly or through a let."""
        uses_now, _, lets = self._facts(rule)
        return uses_now or any(self._let_facts(name)[0] for name in lets)

    def _order_reads(self, rules: list[CheckedRule]) -> frozenset[str] | None:
        """The order's top-level fields these rules' conditions can read; None when that can't be told
        (the whole order passed along).  An action that changes only other fields leaves the
        conditions' results valid, so the engine need not evaluate them again."""
        fields: set[str] = set()
        for checked in rules:
            if checked.rule.condition is None:
                continue
            _, read, lets = self._facts(checked.rule.condition)
            for name in lets:
                read = None if read is None or self._let_facts(name)[1] is None else read | self._let_facts(name)[1]
            if read is None:
                return None
            fields |= read
        return frozenset(fields)

    def _capture(self, emit: Callable[[], None]) -> str:
        """The source a per-rule emitter writes, kept apart from the shared match functions."""
        saved = self.lines
        self.lines = []
        try:
            emit()
            return "\n".join(self.lines) + "\n"
        finally:
            self.lines = saved

    def _line(self, text: str, loc: ast.Loc | None = None) -> None:
        """One line of generated code; a line that stands for rule text says where (``# file:line:col``),
        so the generated source (``EventPlan.source``, ``CompiledRule.source``) reads against the rules."""
        self.lines.append(f"{text}  # {loc}" if loc is not None and loc.line else text)

    def _typer(self, checked: CheckedRule) -> Typer:
        if checked.typer is None:
            checked.typer = Typer(self.checked.lets, self._sink, checked.scope)
        return checked.typer

    def helper_name(self) -> str:
        self._helper_count += 1
        return f"_loop{self._helper_count}"

    def _head(self, fn: FunctionBuilder, signature: str, loc: ast.Loc | None = None) -> None:
        """A generated function's helpers, its ``def`` line and its hoisted reads."""
        for helper in fn.helpers:
            for line in helper.splitlines():
                self._line(line)
        self._line(f"def {signature}:", loc)
        for read in fn.read_lines:
            self._line("    " + read)

    # ---- conditions ---------------------------------------------------------------------
    def _clauses(self, checked: CheckedRule, fn: FunctionBuilder) -> list[tuple[int, list[str], str, str, ast.Loc]]:
        """(written index, setup lines, test, captured values, location) of each top-level clause of a
        condition, in evaluation order: cheap clauses first (see ``cheap_first``)."""
        cond = checked.rule.condition
        if cond is None:
            return []
        ec = ExprCompiler(self, self._typer(checked), fn)
        return [(index,) + ec.clause_check(part, checked.scope, _root_env()) + (part.loc,)
                for index, part in self._cheap_first(cond)]

    def _emit_trace(self, checked: CheckedRule, nodes: TraceNodes) -> None:
        cond = checked.rule.condition
        self._line("def trace(order, event, store, now, tr, tq):", checked.rule.loc)
        if cond is None:
            self._line("    return True")
            return
        ec = ExprCompiler(self, self._typer(checked), FunctionBuilder(hoist=False), trace=nodes)
        self._line(f"    return {ec.bool(cond, checked.scope, _root_env())}", cond.loc)

    def _emit_why(self, checked: CheckedRule) -> None:
        fn = FunctionBuilder(hoist=True)
        fn.shared_helpers = self._why_helpers
        clauses = self._clauses(checked, fn)
        self._head(fn, "why(order, event, store, now)", checked.rule.loc)
        for index, setup, test, values, loc in clauses:
            for line in setup:
                self._line("    " + line, loc)
            self._line(f"    if not {test}: return ({index}, {values})", loc)
        self._line("    return None")

    def _emit_match_why(self, rules: list[CheckedRule],
                        value_sources: dict[tuple[int, int], tuple[list[str], str]]) -> list[str]:
        """``match`` that also notes each missed rule's deciding clause (an int: no allocation) and
        returns a snapshot of its locals, from which ``EventPlan.values`` recomputes what the clause
        compared.  Rules the index skips are not noted (``EventPlan.deciding``).  Returns the
        snapshot's names."""
        fn = FunctionBuilder(hoist=True)
        index = self._index(rules, fn)
        bodies: list[list[tuple[str, ast.Loc | None]]] = []  # per position, without its indexed clause
        for position, checked in enumerate(rules):
            clauses = self._clauses(checked, fn)
            for clause_index, setup, _, values, _ in clauses:
                value_sources[(position, clause_index)] = (setup, values)
            if index.key_of[position] is not None:
                clauses = clauses[1:]  # the index found it true
            if not clauses:
                bodies.append([(f"hit({position})", checked.rule.loc)])
                continue
            if not any(setup for _, setup, _, _, _ in clauses):  # a chain of tests: the least code
                body = [(f"{'if' if n == 0 else 'elif'} not {test}: missed[{position}] = {clause_index}", loc)
                        for n, (clause_index, _, test, _, loc) in enumerate(clauses)]
                body.append((f"else: hit({position})", None))
                bodies.append(body)
                continue
            body = [("while True:", checked.rule.loc)]
            for clause_index, setup, test, _, loc in clauses:
                body.extend((f"    {line}", loc) for line in setup)
                body.append((f"    if not {test}: missed[{position}] = {clause_index}; break", loc))
            body.append((f"    hit({position}); break", None))
            bodies.append(body)
        snapshot = list(fn.reads.values()) + list(fn.shared.values()) + ["now"]
        self._head(fn, "match_why(order, event, store, now)")
        self._line("    fired = []")
        self._line("    hit = fired.append")
        self._line("    missed = {}")
        self._emit_indexed(index, bodies)
        self._line(f"    return fired, missed, ({', '.join(snapshot)},)")
        return snapshot

    def _emit_match(self, rules: list[CheckedRule]) -> tuple[int | None, ...]:
        """The event's ``match``; returns each rule's indexed clause (``EventPlan.index_clauses``)."""
        fn = FunctionBuilder(hoist=True)
        index = self._index(rules, fn)
        bodies: list[list[tuple[str, ast.Loc | None]]] = []
        for position, checked in enumerate(rules):
            cond = checked.rule.condition
            parts = self._condition_parts(checked, fn)
            if index.key_of[position] is not None:
                parts = parts[1:]
            if not parts:
                bodies.append([(f"hit({position})", checked.rule.loc)])
                continue
            code = parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"
            bodies.append([(f"if {code}: hit({position})", cond.loc)])
        self._head(fn, "match(order, event, store, now)")
        self._line("    fired = []")
        self._line("    hit = fired.append")
        self._emit_indexed(index, bodies)
        self._line("    return fired")
        return index.clauses

    def _condition_parts(self, checked: CheckedRule, fn: FunctionBuilder) -> list[str]:
        """A rule's top-level clauses as tests, in evaluation order (cheap first)."""
        if checked.rule.condition is None:
            return []
        ec = ExprCompiler(self, self._typer(checked), fn)
        return [ec.bool(part, checked.scope, _root_env()) for _, part in self._cheap_first(checked.rule.condition)]

    # ---- the index ------------------------------------------------------------------------
    def _index(self, rules: list[CheckedRule], fn: FunctionBuilder) -> "_Index":
        """Which rules of an event are indexed, by what and under which values.

        A rule is indexed by its first clause (in evaluation order) when that clause tests a text
        field (a path of type string, or ``lower``/``upper`` of one) for equality with a string or
        membership in a list of constants.  Rules indexed by the same expression form a dimension;
        the match reads the expression once and runs only the rules of the value it has (a rule of
        a list is under each of its strings), plus every rule not indexed.  A dimension of fewer
        than ``_MIN_INDEXED`` rules costs more than it saves: its rules are tested one by one."""
        index = _Index([None] * len(rules), [None] * len(rules), [])
        if not self.index:
            index.clauses = tuple(index.clauses)
            return index
        found: list[tuple[str, tuple[str, ...], int] | None] = [self._lookup(checked, fn) for checked in rules]
        by_key: dict[str, list[int]] = {}
        for position, entry in enumerate(found):
            if entry is not None:
                by_key.setdefault(entry[0], []).append(position)
        for key, positions in by_key.items():
            if len(positions) < _MIN_INDEXED:
                continue
            under: dict[str, list[int]] = {}
            for position in positions:
                for value in dict.fromkeys(found[position][1]):
                    under.setdefault(value, []).append(position)
                index.key_of[position] = key
                index.clauses[position] = found[position][2]
            groups: dict[tuple[int, ...], int] = {}
            table = {value: groups.setdefault(tuple(members), len(groups)) for value, members in under.items()}
            index.dimensions.append((key, self.const(table), list(groups)))
        index.clauses = tuple(index.clauses)
        return index

    def _lookup(self, checked: CheckedRule, fn: FunctionBuilder) -> tuple[str, tuple[str, ...], int] | None:
        """(the code of the tested expression, the strings it may equal, the clause's written index)
        when a rule's first clause can index it (see ``_index``); else None."""
        cond = checked.rule.condition
        if cond is None:
            return None
        written, first = self._cheap_first(cond)[0]
        if not isinstance(first, ast.Compare):
            return None
        typer, scope = self._typer(checked), checked.scope
        ec = ExprCompiler(self, typer, fn)
        if first.op == "==":
            if isinstance(first.right, ast.StringLit):
                side, values = first.left, (first.right.value,)
            elif isinstance(first.left, ast.StringLit):
                side, values = first.right, (first.left.value,)
            else:
                return None
        elif first.op == "in":
            if ec._constant_members(first, scope) is None:
                return None
            side, values = first.left, tuple(v for v in ec.literal_value(first.right, scope) if isinstance(v, str))
        else:
            return None
        target = side
        if isinstance(side, ast.Call) and side.func in ("lower", "upper") and side.func not in typer.lets \
                and len(side.args) == 1:
            target = side.args[0]
        if ec.path(target, scope) is None or typer.infer(target, scope) != T.STRING:
            return None
        if typer.infer(side, scope) != T.STRING:
            return None
        return ec.expr(side, scope, _root_env()), values, written

    def _emit_indexed(self, index: "_Index", bodies: list[list[tuple[str, ast.Loc | None]]]) -> None:
        """The rules' tests: per dimension, only the group of the value read; then the rules not
        indexed; the fired positions sorted back into evaluation order when several parts add to them."""
        pad = "    "
        for number, (key, table, groups) in enumerate(index.dimensions):
            self._line(f"{pad}_k{number} = {key}")
            text = self.const(str)
            self._line(f"{pad}_g{number} = {table}.get(_k{number}) if _k{number}.__class__ is {text} else None")
            self._line(f"{pad}if _g{number} is not None:")
            self._emit_groups(f"_g{number}", [[line for p in group for line in bodies[p]] for group in groups],
                              0, len(groups), pad + "    ")
        rest = [position for position, key in enumerate(index.key_of) if key is None]
        for position in rest:
            for text, loc in bodies[position]:
                self._line(pad + text, loc)
        if len(index.dimensions) + bool(rest) > 1:
            self._line(f"{pad}fired.sort()")

    def _emit_groups(self, var: str, groups: list[list[tuple[str, ast.Loc | None]]], low: int, high: int,
                     pad: str) -> None:
        """Branch on the group number ``var`` (known to be in [low, high)): halves, then a short chain."""
        if high - low > 4:
            middle = (low + high) // 2
            self._line(f"{pad}if {var} < {middle}:")
            self._emit_groups(var, groups, low, middle, pad + "    ")
            self._line(f"{pad}else:")
            self._emit_groups(var, groups, middle, high, pad + "    ")
            return
        for number in range(low, high):
            if high - low > 1:
                keyword = "if" if number == low else ("else" if number == high - 1 else "elif")
                self._line(f"{pad}{keyword}:" if keyword == "else" else f"{pad}{keyword} {var} == {number}:")
                inner = pad + "    "
            else:
                inner = pad
            for text, loc in groups[number]:
                self._line(inner + text, loc)

    # ---- actions --------------------------------------------------------------------------
    def _emit_actions(self, checked: CheckedRule, cr: CompiledRule) -> None:
        self._line("def act(run, order, event, store, now):", checked.rule.loc)
        typer = self._typer(checked)
        self._statements(checked.rule.actions, checked.scope, _root_env(), "None", 1, typer, cr)
        self._line("    return None")
        cr._constant_calls = _constant_calls(checked.rule.actions)

    def _statements(self, statements, scope: Scope, env: dict[str, str], item: str, depth: int, typer: Typer,
                    cr: CompiledRule) -> None:
        pad = "    " * depth
        for stmt in statements:
            fn = FunctionBuilder(hoist=False)
            ec = ExprCompiler(self, typer, fn)
            if isinstance(stmt, ast.ForBlock):
                elem = typer.element_type(stmt.iterable, scope)
                var = f"_b{depth}_{stmt.var}"
                iterable = ec.iterable(stmt.iterable, scope, env)
                inner_scope = scope.bind(stmt.var, Binding("binder", elem))
                inner_env = dict(env, **{stmt.var: var})
                self._line(f"{pad}for {var} in {iterable}:", stmt.loc)
                if stmt.cond is not None:
                    cond = ExprCompiler(self, typer, fn).bool(stmt.cond, inner_scope, inner_env)
                    self._line(f"{pad}    if not ({cond}): continue", stmt.cond.loc)
                if not stmt.body:
                    self._line(f"{pad}    pass")  # an empty for block is a warning, not an error
                self._statements(stmt.body, inner_scope, inner_env, var, depth + 1, typer, cr)
                continue
            spec = self.actions[stmt.name]
            slot = len(cr.slots)
            cr.slots.append(ActionSlot(spec, stmt))
            params = []
            for arg in stmt.args:
                if isinstance(arg.value, ast.StringLit) and is_template(arg.value.value):
                    value = self.const(compile_template(arg.value.value))
                else:
                    value = ec.expr(arg.value, scope, env)
                params.append(f"{arg.name!r}: {value}")
            binders = [f"{name!r}: {code}" for name, code in env.items() if name not in ROOTS]
            names = "{" + ", ".join(binders) + "}" if binders else "None"
            self._line(f"{pad}run.call({slot}, {{{', '.join(params)}}}, {item}, {names})", stmt.loc)


_PICKED = re.compile(r"""\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(-?[0-9]+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"))\s*(?:,|$)""")


def _picker(values: str, snapshot: tuple[str, ...], namespace: dict[str, Any]) -> Callable[..., tuple] | None:
    """The values of a deciding clause whose code is only snapshot locals, constants and literals
    (``_r1, 'US'``, ``_r2, K7``: most are) as a function that picks them, without compiling
    anything; None when the code is anything else."""
    picks: list[tuple[bool, Any]] = []
    position = 0
    while position < len(values):
        found = _PICKED.match(values, position)
        if found is None or found.end() == position:
            return None
        name, literal = found.groups()
        if name is not None:
            if name in snapshot:
                picks.append((True, snapshot.index(name)))
            elif name in namespace:
                picks.append((False, namespace[name]))
            elif name in ("None", "True", "False"):
                picks.append((False, {"None": None, "True": True, "False": False}[name]))
            else:
                return None
        else:
            picks.append((False, pyast.literal_eval(literal)))
        position = found.end()
    frozen = tuple(picks)

    def pick(*args: Any) -> tuple:
        return tuple(args[at] if local else at for local, at in frozen)
    return pick


_CONSTANTS = (ast.StringLit, ast.NumberLit, ast.BoolLit, ast.NullLit)


def _constant_calls(statements) -> tuple[tuple[int, dict[str, Any]], ...] | None:
    """A rule's actions as (slot, parameters) when every argument is a literal (a template counts:
    it is a constant object) and there is no ``for`` block: then its ``act`` needs no generated
    code (most rules' actions are like that, and compiling 10,000 of them costs a second)."""
    calls = []
    for slot, stmt in enumerate(statements):
        if not isinstance(stmt, ast.ActionCall) or not all(isinstance(a.value, _CONSTANTS) for a in stmt.args):
            return None
        params = {}
        for arg in stmt.args:
            value = arg.value.value if not isinstance(arg.value, ast.NullLit) else None
            if isinstance(arg.value, ast.StringLit) and is_template(value):
                value = compile_template(value)
            params[arg.name] = value
        calls.append((slot, params))
    return tuple(calls)


def _constant_act(calls: tuple[tuple[int, dict[str, Any]], ...]) -> Callable[..., None]:
    """The ``act`` of a rule whose actions take only literals (see ``_constant_calls``): what its
    generated code would do, each call with a fresh parameter dict (``Runner.call`` renders
    templates into it)."""
    def act(run, order, event, store, now):
        for slot, params in calls:
            run.call(slot, dict(params), None, None)
        return None
    return act


def _root_env() -> dict[str, str]:
    """The generated names of the roots (they are spelt as in the rules)."""
    return {name: name for name in ROOTS}


def button_key(label: str) -> str:
    """The plan key of the rules a button runs (labels match case-insensitively)."""
    return f"button:{label.casefold()}"


def schedule_key(rule_name: str) -> str:
    """The plan key of one scheduled rule (each runs on its own timer)."""
    return f"schedule:{rule_name}"


def trigger_keys(rule: CompiledRule) -> tuple[str, ...]:
    if isinstance(rule.trigger, ast.ButtonTrigger):
        return (button_key(rule.trigger.label),)
    if isinstance(rule.trigger, ast.EveryTrigger):
        return (schedule_key(rule.name),)
    return ()
