"""Checked rules -> Python source -> callables.

Every event gets one generated ``match`` function that reads each order field its rules use
once (into locals) and tests every rule's condition inline, in evaluation order; every rule
also gets its own ``why`` function (used after an action changed the order: None when the
condition holds, else its deciding clause) and an ``act`` function that runs its actions.  ``lets`` are expanded in place.  The generated code
runs with ``runtime.RUNTIME_NAMESPACE`` as its only globals, and a line map leads every
generated line back to the rule file it came from.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ast
from . import types as T
from .catalogue import ActionSpec, Catalogue
from .checker import CheckedRule, CheckResult, Scope, Binding, Typer, ROOTS
from .diagnostics import Diagnostics
from .runtime import RUNTIME_NAMESPACE
from .templates import compile_template, is_template

_CMP_HELPERS = {"<": "rt_lt", "<=": "rt_le", ">": "rt_gt", ">=": "rt_ge"}
_ARITH_HELPERS = {"+": "rt_add", "-": "rt_sub", "*": "rt_mul", "/": "rt_div", "%": "rt_mod"}
_SIMPLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|-?[0-9]+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|None|True|False)$")
_LITERAL = re.compile(r"^(?:-?[0-9]+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|True|False|K\d+)$")
_SCALARS = (T.STRING, T.NUMBER, T.BOOL, T.DATETIME, T.DURATION)


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

    def __repr__(self) -> str:
        return f"<CompiledRule {self.name!r} at {self.loc}>"

    def _function(self, kind: str) -> Callable[..., Any]:
        fn = self._functions.get(kind)
        if fn is None:
            filename = f"{self.loc.file}:{self.loc.line} (rule {self.name!r})"
            exec(compile(self._sources[kind], filename, "exec"), self._namespace)  # noqa: S102 - generated code
            fn = self._functions[kind] = self._namespace[kind]
        return fn

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
        return self._sources[kind]


@dataclass
class EventPlan:
    """The enabled rules of one event, in evaluation order, and their shared matcher."""

    event: str
    rules: tuple[CompiledRule, ...]
    match: Callable[..., list[int]]  # (order, event, store, now) -> indexes of rules whose condition holds
    source: str = ""
    line_map: dict[int, ast.Loc] = field(default_factory=dict)
    why_source: str = ""
    namespace: dict[str, Any] = field(default_factory=dict, repr=False)
    uses_now: bool = True  # some rule of the event calls now(): the engine reads its clock only then
    names: tuple[str, ...] = ()  # the rules' names, by position
    reads: frozenset[str] | None = None  # the order's top-level fields the conditions read (None: any)
    _match_why: Callable[..., Any] | None = field(default=None, repr=False)

    @property
    def match_why(self) -> Callable[..., tuple[list[int], dict[int, tuple]]]:
        """``(order, event, store, now) -> (fired, missed)``: like ``match``, and for every rule that
        did not fire, ``missed[i] = (clause index, *values compared)`` -- its deciding clause.
        Compiled on first use."""
        if self._match_why is None:
            scope = dict(self.namespace)
            exec(compile(self.why_source, f"<match_why {self.event!r}>", "exec"), scope)  # noqa: S102
            self._match_why = scope["match_why"]
        return self._match_why

    def location(self, generated_line: int) -> ast.Loc | None:
        """The rule-file location a line of the generated match code came from (for tracebacks)."""
        lines = [line for line in self.line_map if line <= generated_line]
        return self.line_map[max(lines)] if lines else None


@dataclass
class CompiledCode:
    rules: list[CompiledRule]
    plans: dict[str, EventPlan]


class _Function:
    """Builds one generated function: its hoisted field reads, temporaries and body lines."""

    def __init__(self, hoist: bool) -> None:
        self.hoist = hoist
        self.reads: dict[tuple, str] = {}
        self.read_lines: list[str] = []
        self.temps = 0
        self.shared: dict[ast.Expr, str] = {}  # aggregate -> the local caching its result
        self.helpers: list[str] = []  # module-level functions this function calls (loops over lists)

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"


class Compiler:
    def __init__(self, checked: CheckResult, actions: Catalogue[ActionSpec], trace: bool = False) -> None:
        self.checked = checked
        self.actions = actions
        self.trace = trace
        self.consts: dict[str, Any] = {}
        self._const_ids: dict[tuple[type, Any], str] = {}
        self.lines: list[str] = []
        self.line_map: dict[int, ast.Loc] = {}
        self._sink = Diagnostics()
        self._helper_count = 0
        self._let_fact_cache: dict[str, tuple[bool, frozenset[str] | None]] = {}

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
            cr._sources["why"] = self._capture(lambda: self._emit_why(checked))
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
            self.lines, self.line_map = [], {}
            rules = [ordered[i] for i in indexes]
            self._emit_match(rules)
            source = "\n".join(self.lines) + "\n"
            exec(compile(source, f"<match {event!r}>", "exec"), namespace)  # noqa: S102 - generated code
            why_source = self._capture(lambda: self._emit_match_why(rules))
            plans[event] = EventPlan(event, tuple(compiled[i] for i in indexes), namespace.pop("match"),
                                     source, self.line_map, why_source, namespace,
                                     uses_now=any(self._uses_now(r.rule) for r in rules),
                                     reads=self._order_reads(rules), names=tuple(r.rule.name for r in rules))
        namespace.update(self.consts)  # the constants the match functions added
        for cr in compiled:
            cr._namespace = namespace
        return CompiledCode(compiled, plans)

    def _facts(self, node: ast.Node) -> tuple[bool, frozenset[str] | None, frozenset[str]]:
        """One walk over a tree: (calls now() itself, the order fields it reads or None when the whole
        order is passed along, the lets it uses)."""
        uses_now, fields, lets = False, set(), set()
        objects = set()
        nodes = list(ast.walk(node))
        for sub in nodes:
            if isinstance(sub, (ast.Attr, ast.Index)) and isinstance(sub.obj, ast.Name):
                objects.add(id(sub.obj))
        whole = False
        for sub in nodes:
            if isinstance(sub, ast.Call):
                uses_now = uses_now or sub.func == "now"
                if sub.func in self.checked.lets:
                    lets.add(sub.func)
            elif isinstance(sub, ast.Name):
                if sub.id in self.checked.lets:
                    lets.add(sub.id)
                elif sub.id == "order" and id(sub) not in objects:
                    whole = True
            elif isinstance(sub, (ast.Attr, ast.Index)) and isinstance(sub.obj, ast.Name) and sub.obj.id == "order":
                key = sub.name if isinstance(sub, ast.Attr) else getattr(sub.key, "value", None)
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
        saved, saved_map = self.lines, self.line_map
        self.lines, self.line_map = [], {}
        try:
            emit()
            return "\n".join(self.lines) + "\n"
        finally:
            self.lines, self.line_map = saved, saved_map

    def _line(self, text: str, loc: ast.Loc | None = None) -> None:
        self.lines.append(text)
        if loc is not None and loc.line:
            self.line_map[len(self.lines)] = loc

    def _typer(self, checked: CheckedRule) -> Typer:
        if checked.typer is None:
            checked.typer = Typer(self.checked.lets, self._sink, checked.scope)
        return checked.typer

    def _env(self, checked: CheckedRule) -> dict[str, str]:
        return {name: name for name in ROOTS}

    def helper_name(self) -> str:
        self._helper_count += 1
        return f"_loop{self._helper_count}"

    def _head(self, fn: _Function, signature: str, loc: ast.Loc | None = None) -> None:
        """A generated function's helpers, its ``def`` line and its hoisted reads."""
        for helper in fn.helpers:
            for line in helper.splitlines():
                self._line(line)
        self._line(f"def {signature}:", loc)
        for read in fn.read_lines:
            self._line("    " + read)

    # ---- conditions ---------------------------------------------------------------------
    def _condition_code(self, checked: CheckedRule, fn: _Function) -> str:
        """A rule's condition as one expression, its top-level clauses cheap first."""
        ec = ExprCompiler(self, self._typer(checked), fn)
        parts = [ec.bool(part, checked.scope, self._env(checked)) for _, part in cheap_first(checked.rule.condition)]
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def _clauses(self, checked: CheckedRule, fn: _Function) -> list[tuple[int, list[str], str, str, ast.Loc]]:
        """(written index, setup lines, test, captured values, location) of each top-level clause of a
        condition, in evaluation order: cheap clauses first (see ``cheap_first``)."""
        cond = checked.rule.condition
        if cond is None:
            return []
        ec = ExprCompiler(self, self._typer(checked), fn)
        return [(index,) + ec.clause_check(part, checked.scope, self._env(checked)) + (part.loc,)
                for index, part in cheap_first(cond)]

    def _emit_trace(self, checked: CheckedRule, nodes: TraceNodes) -> None:
        cond = checked.rule.condition
        self._line("def trace(order, event, store, now, tr, tq):", checked.rule.loc)
        if cond is None:
            self._line("    return True")
            return
        ec = ExprCompiler(self, self._typer(checked), _Function(hoist=False), trace=nodes)
        self._line(f"    return {ec.bool(cond, checked.scope, self._env(checked))}", cond.loc)

    def _emit_why(self, checked: CheckedRule) -> None:
        fn = _Function(hoist=True)
        clauses = self._clauses(checked, fn)
        self._head(fn, "why(order, event, store, now)", checked.rule.loc)
        for index, setup, test, values, loc in clauses:
            for line in setup:
                self._line("    " + line, loc)
            self._line(f"    if not {test}: return ({index}, {values})", loc)
        self._line("    return None")

    def _emit_match_why(self, rules: list[CheckedRule]) -> None:
        fn = _Function(hoist=True)
        body: list[tuple[str, ast.Loc | None]] = []
        for position, checked in enumerate(rules):
            clauses = self._clauses(checked, fn)
            if not clauses:
                body.append((f"    hit({position})", checked.rule.loc))
                continue
            body.append(("    while True:", checked.rule.loc))
            for index, setup, test, values, loc in clauses:
                body.extend((f"        {line}", loc) for line in setup)
                body.append((f"        if not {test}: missed[{position}] = ({index}, {values}); break", loc))
            body.append((f"        hit({position}); break", None))
        self._head(fn, "match_why(order, event, store, now)")
        self._line("    fired = []")
        self._line("    hit = fired.append")
        self._line("    missed = {}")
        for text, loc in body:
            self._line(text, loc)
        self._line("    return fired, missed")

    def _emit_match(self, rules: list[CheckedRule]) -> None:
        fn = _Function(hoist=True)
        body: list[tuple[str, ast.Loc]] = []
        for position, checked in enumerate(rules):
            cond = checked.rule.condition
            if cond is None:
                body.append((f"    hit({position})", checked.rule.loc))
                continue
            body.append((f"    if {self._condition_code(checked, fn)}: hit({position})", cond.loc))
        self._head(fn, "match(order, event, store, now)")
        self._line("    fired = []")
        self._line("    hit = fired.append")
        for text, loc in body:
            self._line(text, loc)
        self._line("    return fired")

    # ---- actions --------------------------------------------------------------------------
    def _emit_actions(self, checked: CheckedRule, cr: CompiledRule) -> None:
        self._line("def act(run, order, event, store, now):", checked.rule.loc)
        typer = self._typer(checked)
        self._statements(checked.rule.actions, checked.scope, self._env(checked), "None", 1, typer, cr)
        self._line("    return None")

    def _statements(self, statements, scope: Scope, env: dict[str, str], item: str, depth: int, typer: Typer,
                    cr: CompiledRule) -> None:
        pad = "    " * depth
        for stmt in statements:
            fn = _Function(hoist=False)
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
                    value = ec.value(arg.value, scope, env)
                params.append(f"{arg.name!r}: {value}")
            binders = [f"{name!r}: {code}" for name, code in env.items() if name not in ROOTS]
            names = "{" + ", ".join(binders) + "}" if binders else "None"
            self._line(f"{pad}run.call({slot}, {{{', '.join(params)}}}, {item}, {names})", stmt.loc)


class TraceNodes:
    """The expression occurrences a traced condition records, by id: (node, depth, kind)."""

    def __init__(self) -> None:
        self.nodes: list[tuple[ast.Expr, int, str]] = []

    def add(self, node: ast.Expr, depth: int, kind: str = "value") -> int:
        self.nodes.append((node, depth, kind))
        return len(self.nodes) - 1


_UNTRACED = (ast.StringLit, ast.NumberLit, ast.DurationLit, ast.BoolLit, ast.NullLit)


class ExprCompiler:
    """Compiles one expression to a Python expression string.

    With ``trace`` set, every non-literal subexpression is wrapped in ``tr(id, value)`` and every
    element a quantifier looks at in ``tq(id, element, result)``, so a full explanation can be
    rebuilt from the calls (ids index ``trace.nodes``)."""

    def __init__(self, compiler: Compiler, typer: Typer, fn: _Function, no_walrus: bool = False,
                 trace: TraceNodes | None = None, depth: int = 0) -> None:
        self.c = compiler
        self.typer = typer
        self.fn = fn
        self.no_walrus = no_walrus
        self.trace = trace
        self.depth = depth

    def type(self, e: ast.Expr, scope: Scope) -> T.Type:
        return self.typer.infer(e, scope)

    # entry points
    def bool(self, e: ast.Expr, scope: Scope, env: dict[str, str]) -> str:
        code = self.expr(e, scope, env)
        t = self.type(e, scope)
        return code if t == T.BOOL else f"rt_truthy({code})"

    def value(self, e: ast.Expr, scope: Scope, env: dict[str, str]) -> str:
        return self.expr(e, scope, env)

    def iterable(self, e: ast.Expr, scope: Scope, env: dict[str, str]) -> str:
        inner = ExprCompiler(self.c, self.typer, self.fn, no_walrus=True, trace=self.trace, depth=self.depth)
        code = inner.expr(e, scope, env)
        t = self.type(e, scope)
        if isinstance(t, T.ListOf):
            return code if code.startswith("K") else f"({code} or ())"
        return f"rt_iter({code})"

    def expr(self, e: ast.Expr, scope: Scope, env: dict[str, str]) -> str:
        if self.trace is None or isinstance(e, _UNTRACED) or self._is_plain_name(e, scope):
            return getattr(self, "c_" + type(e).__name__)(e, scope, env)
        node_id = self.trace.add(e, self.depth)
        self.depth += 1
        try:
            code = getattr(self, "c_" + type(e).__name__)(e, scope, env)
        finally:
            self.depth -= 1
        return f"tr({node_id}, {code})"

    def _is_plain_name(self, e: ast.Expr, scope: Scope) -> bool:
        """order/event/store and binders are not worth a trace line (quantifier elements have their own)."""
        if not isinstance(e, ast.Name):
            return False
        binding = scope.get(e.id)
        return binding is not None and binding.kind in ("root", "binder")

    def simple(self, code: str) -> tuple[str, str]:
        """(first use, later uses) of a value: a walrus temp when the code is not a plain name."""
        if _SIMPLE.match(code) or self.no_walrus:
            return code, code
        name = self.fn.temp()
        return f"({name} := {code})", name

    # literals
    def c_StringLit(self, e, scope, env):
        return repr(e.value)

    def c_NumberLit(self, e, scope, env):
        return repr(e.value) if isinstance(e.value, int) else self.c.const(e.value)

    def c_DurationLit(self, e, scope, env):
        return self.c.const(_dt.timedelta(seconds=e.seconds))

    def c_BoolLit(self, e, scope, env):
        return "True" if e.value else "False"

    def c_NullLit(self, e, scope, env):
        return "None"

    def c_ListLit(self, e, scope, env):
        literal = self.literal_value(e, scope)
        if literal is not None:
            return self.c.const(list(literal))
        return "[" + ", ".join(self.expr(i, scope, env) for i in e.items) + "]"

    def literal_value(self, e: ast.Expr, scope: Scope) -> tuple | None:
        """A list literal's value (through let names), or None when it is not constant."""
        if isinstance(e, ast.Name) and scope.get(e.id) is None and e.id in self.typer.lets:
            let = self.typer.lets[e.id]
            if let.params is None:
                return self.literal_value(let.body, Scope({}))
        if not isinstance(e, ast.ListLit):
            return None
        values = []
        for item in e.items:
            if isinstance(item, (ast.StringLit, ast.NumberLit, ast.BoolLit)):
                values.append(item.value)
            elif isinstance(item, ast.NullLit):
                values.append(None)
            else:
                return None
        return tuple(values)

    # names and paths
    def c_Name(self, e, scope, env):
        binding = scope.get(e.id)
        if binding is not None:
            if binding.kind == "param" and binding.arg is not None:
                return self.expr(binding.arg, binding.arg_scope, env["__outer__"][e.id])
            if binding.kind == "root" and self.fn.hoist:
                return self.read((e.id,), e.id)
            return env[e.id]
        let = self.typer.lets[e.id]
        return self.expand(let, (), scope, env)

    def expand(self, let: ast.Let, args: tuple[ast.Expr, ...], scope: Scope, env: dict[str, str]) -> str:
        base = self.typer.base_scope
        let_scope = Scope({k: v for k, v in base.names.items() if k in ROOTS}, let.name)
        let_env = {k: k for k in ROOTS}
        outer = {}
        for param, arg in zip(let.params or (), args):
            let_scope = let_scope.bind(param, Binding("param", T.ANY, arg=arg, arg_scope=scope))
            outer[param] = env
        let_env["__outer__"] = outer
        return self.expr(let.body, let_scope, let_env)

    def path(self, e: ast.Expr, scope: Scope) -> tuple | None:
        """The constant path of a field read rooted at order/event/store, or None."""
        if isinstance(e, ast.Name):
            binding = scope.get(e.id)
            if binding is not None and binding.kind == "root":
                return (e.id,)
            if binding is not None and binding.kind == "param" and binding.arg is not None:
                return self.path(binding.arg, binding.arg_scope)
            return None
        if isinstance(e, ast.Attr):
            base = self.path(e.obj, scope)
            return None if base is None else base + (e.name,)
        if isinstance(e, ast.Index) and isinstance(e.key, (ast.StringLit, ast.NumberLit)):
            base = self.path(e.obj, scope)
            return None if base is None else base + (e.key.value,)
        return None

    def read(self, path: tuple, root_code: str) -> str:
        """A local holding the value at ``path``, read once at the top of the function."""
        name = self.fn.reads.get(path)
        if name is not None:
            return name
        if len(path) == 1:
            return root_code
        parent = self.read(path[:-1], root_code)
        name = f"_r{len(self.fn.reads)}"
        self.fn.reads[path] = name
        self.fn.read_lines.append(f"{name} = {self._get(parent, path[:-1], path[-1])}")
        return name

    def _get(self, base_code: str, base_path: tuple, key: Any) -> str:
        if self._is_record_path(base_path):
            return f"{base_code}.get({key!r})"
        return f"rt_get({base_code}, {key!r})"

    def _is_record_path(self, path: tuple) -> bool:
        """Whether the value at ``path`` is a record of the model (so always a dict at run time)."""
        if len(path) == 1:
            return True  # order, event and store are always dicts
        t: T.Type = self.typer.base_scope.get(path[0]).type
        for key in path[1:]:
            if not isinstance(t, T.Record) or key not in t.fields:
                return False
            t = t.fields[key]
        return isinstance(t, T.Record) and path[0] == "order"

    def c_Attr(self, e, scope, env):
        return self._field(e, e.obj, e.name, scope, env)

    def c_Index(self, e, scope, env):
        if isinstance(e.key, (ast.StringLit, ast.NumberLit)):
            return self._field(e, e.obj, e.key.value, scope, env)
        return f"rt_get({self.expr(e.obj, scope, env)}, {self.expr(e.key, scope, env)})"

    def _field(self, e, obj, key, scope, env):
        path = self.path(e, scope)
        if path is not None and self.fn.hoist:
            return self.read(path, path[0])
        base = self.expr(obj, scope, env)
        base_path = self.path(obj, scope)
        if base_path is not None and self._is_record_path(base_path):
            return f"{base}.get({key!r})"
        if _is_record_binder(obj, scope, self.type(obj, scope)):
            return f"{base}.get({key!r})"
        return f"rt_get({base}, {key!r})"

    def c_Call(self, e, scope, env):
        let = self.typer.lets.get(e.func)
        if let is not None and let.params is not None:
            return self.expand(let, e.args, scope, env)
        args = [self.expr(a, scope, env) for a in e.args]
        if e.func == "now":
            return "now"
        return f"rt_{e.func}({', '.join(args)})"

    # operators
    def c_Not(self, e, scope, env):
        return f"(not {self.bool(e.operand, scope, env)})"

    def c_Neg(self, e, scope, env):
        if isinstance(e.operand, ast.NumberLit):
            return repr(-e.operand.value) if isinstance(e.operand.value, int) else self.c.const(-e.operand.value)
        return f"rt_neg({self.expr(e.operand, scope, env)})"

    def c_BoolOp(self, e, scope, env):
        parts = [self.bool(o, scope, env) for o in e.operands]
        return "(" + f" {e.op} ".join(parts) + ")"

    def c_BinOp(self, e, scope, env):
        return f"{_ARITH_HELPERS[e.op]}({self.expr(e.left, scope, env)}, {self.expr(e.right, scope, env)})"

    def c_Compare(self, e, scope, env):
        left, right = self.compare_operands(e, scope, env)
        return self.compare_code(e, left, right, scope)

    def compare_operands(self, e: ast.Compare, scope: Scope, env: dict[str, str]) -> tuple[str, str]:
        """Code for the two operands as the comparison uses them: a constant set for `in` a literal
        list, the compiled pattern for `matches`, the other side only for a test against null."""
        if e.op in ("==", "!=") and isinstance(e.left, ast.NullLit):
            return self.expr(e.right, scope, env), "None"
        left = self.expr(e.left, scope, env)
        if e.op == "matches":
            return left, self.c.const(self.typer.regex_of(e.right, scope))
        if e.op in ("in", "not in") and self._constant_members(e, scope) is not None:
            return left, self._constant_members(e, scope)
        return left, self.expr(e.right, scope, env)

    def _constant_members(self, e: ast.Compare, scope: Scope) -> str | None:
        literal = self.literal_value(e.right, scope)
        if literal is None or self.type(e.left, scope) not in (T.STRING, T.NUMBER):
            return None
        return self.c.const(frozenset(v for v in literal if v is not None))  # null is in nothing

    def compare_code(self, e: ast.Compare, left: str, right: str, scope: Scope) -> str:
        """The test ``left <op> right`` with the language's null rules, given the operands' code."""
        op = e.op
        lt, rt = self.type(e.left, scope), self.type(e.right, scope)
        if op in ("==", "!="):
            if isinstance(e.right, ast.NullLit) or isinstance(e.left, ast.NullLit):
                return f"({left} {'is' if op == '==' else 'is not'} None)"
            if lt.is_any() or rt.is_any():
                # Run-time types: true and 1 are not equal here, unlike in Python.
                return f"{'rt_eq' if op == '==' else 'rt_ne'}({left}, {right})"
            if op == "==":
                if _LITERAL.match(left) or _LITERAL.match(right):
                    return f"({left} == {right})"  # a missing value never equals a literal
                first, later = self.simple(left)
                if self.no_walrus and first != later:
                    return f"rt_eq({left}, {right})"
                return f"({first} is not None and {later} == {right})"  # two missing values are not equal
            return self._null_guarded(left, right, "!=")
        if op in _CMP_HELPERS:
            if lt in _SCALARS and lt == rt:
                return self._null_guarded(left, right, op)
            return f"{_CMP_HELPERS[op]}({left}, {right})"
        if op in ("in", "not in"):
            if self._constant_members(e, scope) is not None:
                if op == "in":
                    return f"({left} in {right})"
                first, later = self.simple(left)
                return f"({first} is not None and {later} not in {right})"
            return f"{'rt_in' if op == 'in' else 'rt_not_in'}({left}, {right})"
        if op == "contains":
            if lt == T.STRING and isinstance(e.right, ast.StringLit):
                first, later = self.simple(left)
                return f"({first} is not None and {right} in {later})"
            return f"rt_contains({left}, {right})"
        if op in ("starts with", "ends with"):
            method = "startswith" if op == "starts with" else "endswith"
            if lt == T.STRING and isinstance(e.right, ast.StringLit):
                first, later = self.simple(left)
                return f"({first} is not None and {later}.{method}({right}))"
            return f"{'rt_starts' if op == 'starts with' else 'rt_ends'}({left}, {right})"
        if op == "matches":
            return f"rt_matches({right}, {left})"
        raise AssertionError(op)

    def _null_guarded(self, left: str, right: str, op: str) -> str:
        guards = []
        lf, ll = (left, left) if _LITERAL.match(left) else self.simple(left)
        rf, rl = (right, right) if _LITERAL.match(right) else self.simple(right)
        if not _LITERAL.match(left):
            guards.append(f"{lf} is not None")
        if not _LITERAL.match(right):
            guards.append(f"{rf} is not None")
        if self.no_walrus and (lf != ll or rf != rl):
            return f"{_CMP_HELPERS.get(op, 'rt_ne')}({left}, {right})"
        return "(" + " and ".join(guards + [f"{ll} {op} {rl}"]) + ")"

    def clause_check(self, e: ast.Expr, scope: Scope, env: dict[str, str]) -> tuple[list[str], str, str]:
        """One top-level clause as (setup statements, test, values): the operands are computed into
        ``_a``/``_b`` first, so a failing test can report the values it compared."""
        if isinstance(e, ast.Compare):
            left, right = self.compare_operands(e, scope, env)
            setup = []
            if not _SIMPLE.match(left) and not _LITERAL.match(left):  # hoisted reads and literals are used as they are
                setup.append(f"_a = {left}")
                left = "_a"
            if not _SIMPLE.match(right) and not _LITERAL.match(right):
                setup.append(f"_b = {right}")
                right = "_b"
            shown = right
            if e.op in ("in", "not in") and self._constant_members(e, scope) is not None:
                shown = self.c.const(list(self.literal_value(e.right, scope)))  # as written, not as a set
            return setup, self.compare_code(e, left, right, scope), f"{left}, {shown}"
        if isinstance(e, ast.Test):
            value = self.expr(e.operand, scope, env)
            if _SIMPLE.match(value):
                return [], self.test_code(e, value), f"{value},"
            return [f"_a = {value}"], self.test_code(e, "_a"), "_a,"
        return [], self.bool(e, scope, env), ""

    def c_Test(self, e, scope, env):
        return self.test_code(e, self.expr(e.operand, scope, env))

    def test_code(self, e: ast.Test, value: str) -> str:
        if e.op == "is set":
            first, later = self.simple(value)
            return f"({first} is not None and {later} != '')"
        if e.op == "is not set":
            first, later = self.simple(value)
            return f"({first} is None or {later} == '')"
        return f"{'rt_is_empty' if e.op == 'is empty' else 'rt_is_not_empty'}({value})"

    def _binder(self, var: str, iterable: ast.Expr, scope: Scope, env: dict[str, str]):
        elem = self.typer.element_type(iterable, scope)
        name = f"_v{self.fn.temp()}_{var}"
        inner_scope = scope.bind(var, Binding("binder", elem))
        inner_env = dict(env, **{var: name})
        return name, self.iterable(iterable, scope, env), inner_scope, inner_env

    def _element_cond(self, node: ast.Expr, cond: ast.Expr, name: str, scope: Scope, env: dict[str, str]) -> str:
        """The where-condition of a quantifier or count, recorded per element when tracing."""
        if self.trace is None:
            return self.bool(cond, scope, env)
        element_id = self.trace.add(node, self.depth, "element")
        self.depth += 1
        try:
            code = self.bool(cond, scope, env)
        finally:
            self.depth -= 1
        return f"tq({element_id}, {name}, {code})"

    def shared(self, e: ast.Expr, env: dict[str, str], compute) -> str:
        """An aggregate (any/all/count/sum) that depends on no binder is computed at most once per
        match call, however many rules use it: its result is cached in a local on first use."""
        if not self.fn.hoist or self.trace is not None or set(env) - set(ROOTS):
            return compute()
        local = self.fn.shared.get(e)
        if local is None:
            local = self.fn.shared[e] = f"_q{len(self.fn.shared)}"
            self.fn.read_lines.append(f"{local} = None")
        return f"({local} if {local} is not None else ({local} := {compute()}))"

    def c_Quantifier(self, e, scope, env):
        return self.shared(e, env, lambda: self._quantifier(e, scope, env))

    def _loop_helper(self, e: ast.Expr, var: str, iterable_node: ast.Expr, cond_node: ast.Expr, scope: Scope,
                     env: dict[str, str], on_hit: str, after: str, count: bool = False) -> str | None:
        """A quantifier or count in a match function, as a call of a module-level function with a plain
        ``for`` loop: about twice as fast as ``any(<generator>)``.  Only where it depends on no binder."""
        if not self.fn.hoist or self.trace is not None or set(env) - set(ROOTS):
            return None
        iterable = self.iterable(iterable_node, scope, env)
        elem = self.typer.element_type(iterable_node, scope)
        inner_scope = scope.bind(var, Binding("binder", elem))
        name = f"_v_{var}"
        inner = ExprCompiler(self.c, self.typer, _Function(hoist=False))
        cond = inner.bool(cond_node, inner_scope, {**{r: r for r in ROOTS}, var: name})
        helper = self.c.helper_name()
        body = [f"def {helper}(items, order, event, store, now):"]
        if count:
            body += ["    found = 0", f"    for {name} in items:", f"        if {cond}: found += 1", "    return found"]
        else:
            body += [f"    for {name} in items:", f"        if {on_hit.format(cond=cond)}", f"    return {after}"]
        self.fn.helpers.append("\n".join(body))
        return f"{helper}({iterable}, order, event, store, now)"

    def _quantifier(self, e, scope, env):
        if e.kind == "any":
            looped = self._loop_helper(e, e.var, e.iterable, e.cond, scope, env, "{cond}: return True", "False")
        else:
            looped = self._loop_helper(e, e.var, e.iterable, e.cond, scope, env, "not ({cond}): return False",
                                       "True")
        if looped is not None:
            return looped
        name, iterable, inner_scope, inner_env = self._binder(e.var, e.iterable, scope, env)
        cond = self._element_cond(e, e.cond, name, inner_scope, inner_env)
        if e.kind == "any":
            return f"any(True for {name} in {iterable} if {cond})"
        return f"all({cond} for {name} in {iterable})"

    def c_Count(self, e, scope, env):
        return self.shared(e, env, lambda: self._count(e, scope, env))

    def _count(self, e, scope, env):
        if e.var is None or e.cond is None:
            return f"rt_count({self.expr(e.iterable, scope, env)})"
        looped = self._loop_helper(e, e.var, e.iterable, e.cond, scope, env, "", "", count=True)
        if looped is not None:
            return looped
        name, iterable, inner_scope, inner_env = self._binder(e.var, e.iterable, scope, env)
        return f"sum(1 for {name} in {iterable} if {self._element_cond(e, e.cond, name, inner_scope, inner_env)})"

    def c_Sum(self, e, scope, env):
        return self.shared(e, env, lambda: self._sum(e, scope, env))

    def _sum(self, e, scope, env):
        if e.var is None:
            return f"rt_sum({self.iterable(e.expr, scope, env)})"
        name, iterable, inner_scope, inner_env = self._binder(e.var, e.iterable, scope, env)
        body = self.expr(e.expr, inner_scope, inner_env)
        where = f" if {self.bool(e.cond, inner_scope, inner_env)}" if e.cond is not None else ""
        return f"rt_sum({body} for {name} in {iterable}{where})"


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


def cost(e: ast.Expr | None) -> int:
    """A rough evaluation cost: field reads and literals are free, loops over lists are dear."""
    if e is None or isinstance(e, (ast.StringLit, ast.NumberLit, ast.DurationLit, ast.BoolLit, ast.NullLit,
                                   ast.Name)):
        return 0
    if isinstance(e, (ast.Attr, ast.Index)):
        return cost(e.obj) + (cost(e.key) if isinstance(e, ast.Index) else 0)
    if isinstance(e, (ast.Quantifier, ast.Count, ast.Sum)):
        return 20
    if isinstance(e, ast.Call):
        return (1 if e.func in ("lower", "upper", "len", "now", "date", "round") else 8) + sum(map(cost, e.args))
    if isinstance(e, ast.ListLit):
        return sum(map(cost, e.items))
    if isinstance(e, ast.Compare):
        weight = {"matches": 4, "contains": 2, "starts with": 2, "ends with": 2}.get(e.op, 1)
        return weight + cost(e.left) + cost(e.right)
    if isinstance(e, ast.Test):
        return 1 + cost(e.operand)
    if isinstance(e, (ast.Not, ast.Neg)):
        return cost(e.operand)
    if isinstance(e, ast.BinOp):
        return 1 + cost(e.left) + cost(e.right)
    if isinstance(e, ast.BoolOp):
        return sum(map(cost, e.operands))
    return 5


def cheap_first(cond: ast.Expr) -> list[tuple[int, ast.Expr]]:
    """The top-level clauses of a condition with their written index, cheapest first (stable).

    Conditions have no side effects and never raise, so the order of an ``and``'s operands does
    not change its value: testing `order.shipping.country == "US"` before looping over the items
    saves the loop for most orders.  The deciding clause of a rule that did not fire is then the
    first false clause in this order (its written index is kept for the explanation)."""
    parts = cond.operands if isinstance(cond, ast.BoolOp) and cond.op == "and" else (cond,)
    return sorted(enumerate(parts), key=lambda pair: (cost(pair[1]), pair[0]))


def _is_record_binder(obj: ast.Expr, scope: Scope, t: T.Type) -> bool:
    """A binder over a list of the order model's records (items, shipments, notes): always a dict."""
    if not isinstance(obj, ast.Name) or not isinstance(t, T.Record) or t.extra is not None:
        return False
    binding = scope.get(obj.id)
    return binding is not None and binding.kind == "binder" and not t.name.startswith("event")
