"""Rule expressions -> Python expression source: null-safe operators, hoisted field reads,
shared aggregates, deciding-clause capture and traces (the per-expression half of the compiler)."""

from __future__ import annotations

import datetime as _dt
import re
from typing import TYPE_CHECKING, Any

from ruledesk.grammar import ast
from ruledesk.engine.model import types as T
from ruledesk.engine.lang.typer import ROOTS, Binding, Scope, Typer

if TYPE_CHECKING:
    from ruledesk.engine.lang.compiler import Compiler

_CMP_HELPERS = {"<": "rt_lt", "<=": "rt_le", ">": "rt_gt", ">=": "rt_ge"}
_ARITH_HELPERS = {"+": "rt_add", "-": "rt_sub", "*": "rt_mul", "/": "rt_div", "%": "rt_mod"}
_SIMPLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|-?[0-9]+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|None|True|False)$")
_LITERAL = re.compile(r"^(?:-?[0-9]+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|True|False|K\d+)$")
_SCALARS = (T.STRING, T.NUMBER, T.BOOL, T.DATETIME, T.DURATION)


class FunctionBuilder:
    """Builds one generated function: its hoisted field reads, temporaries and body lines."""

    def __init__(self, hoist: bool) -> None:
        self.hoist = hoist
        self.reads: dict[tuple, str] = {}
        self.read_lines: list[str] = []
        self.temps = 0
        self.shared: dict[ast.Expr, str] = {}  # aggregate -> the local caching its result
        self.shared_code: dict[str, str] = {}  # that local -> the code that reads or computes it
        self.helpers: list[str] = []  # module-level functions this function calls (loops over lists)
        # When set, loop helpers go here instead, each distinct one once: the text of its body ->
        # (its name, its definition); the caller defines them (see compiler.SharedHelpers).
        self.shared_helpers: dict[str, tuple[str, str]] | None = None

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"


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

    def __init__(self, compiler: Compiler, typer: Typer, fn: FunctionBuilder, no_walrus: bool = False,
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
        """Not worth a trace line: order/event/store and binders (quantifier elements have their own),
        and a path to a record, map or list on its way to the value the rule compares."""
        if isinstance(e, ast.Name):
            binding = scope.get(e.id)
            if binding is not None and binding.kind in ("root", "binder"):
                return True
        if isinstance(e, (ast.Name, ast.Attr, ast.Index)):
            return isinstance(self.type(e, scope), (T.Record, T.MapOf, T.ListOf))
        return False

    def simple(self, code: str) -> tuple[str, str]:
        """(first use, later uses) of a value: a walrus temp when the code is not a plain name."""
        if _SIMPLE.match(code) or self.no_walrus:
            return code, code
        name = self.fn.temp()
        return f"({name} := {code})", name

    # literals
    def c_StringLit(self, e, scope, env):
        # A long text is a constant: the generated code stays short (its regexes scan each line).
        return repr(e.value) if len(e.value) <= 100 else self.c.const(e.value)

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
                other = right if isinstance(e.left, ast.NullLit) else left
                if other != "None" and _LITERAL.match(other):  # a literal is never null (and `"a" is None` warns)
                    return "False" if op == "==" else "True"
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
            self.fn.shared_code[local] = f"({local} if {local} is not None else ({local} := {compute()}))"
        return self.fn.shared_code[local]

    def c_Quantifier(self, e, scope, env):
        return self.shared(e, env, lambda: self._quantifier(e, scope, env))

    def _loop_helper(self, e: ast.Expr, var: str, iterable_node: ast.Expr, cond_node: ast.Expr, scope: Scope,
                     env: dict[str, str], on_hit: str, after: str, count: bool = False) -> str | None:
        """A quantifier or count in a match function, as a call of a module-level function with a plain
        ``for`` loop: about twice as fast as ``any(<generator>)``.  Only where it depends on no binder."""
        if not self.fn.hoist or self.trace is not None or set(env) - set(ROOTS):
            return None
        iterable = self.iterable(iterable_node, scope, env)
        name = f"_v_{var}"
        # A rule's condition is compiled for its event's match, match_why and its own why: the loop's
        # test (a pure function of these, compiled without hoisting) is made once.
        key = (id(cond_node), id(iterable_node), id(scope), id(self.typer), var)
        cached = self.c._loop_conds.get(key)
        if cached is not None and cached[0] is cond_node and cached[1] is scope and cached[2] is self.typer:
            cond = cached[3]
        else:
            elem = self.typer.element_type(iterable_node, scope)
            inner_scope = scope.bind(var, Binding("binder", elem))
            inner = ExprCompiler(self.c, self.typer, FunctionBuilder(hoist=False))
            cond = inner.bool(cond_node, inner_scope, {**{r: r for r in ROOTS}, var: name})
            self.c._loop_conds[key] = (cond_node, scope, self.typer, cond)
        helper = self.c.helper_name()
        body = [f"def {helper}(items, order, event, store, now):"]
        if count:
            body += ["    found = 0", f"    for {name} in items:", f"        if {cond}: found += 1", "    return found"]
        else:
            body += [f"    for {name} in items:", f"        if {on_hit.format(cond=cond)}", f"    return {after}"]
        shared = self.fn.shared_helpers
        if shared is None:
            self.fn.helpers.append("\n".join(body))
        else:
            helper = shared.setdefault("\n".join(body[1:]), (helper, "\n".join(body)))[0]
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
        return (1 if e.func in ast.BUILTIN_FUNCTIONS else 8) + sum(map(cost, e.args))
    if isinstance(e, ast.ListLit):
        return sum(map(cost, e.items))
    if isinstance(e, ast.Compare):
        weight = 0 if _is_lookup(e) else {"matches": 4, "contains": 2, "starts with": 2, "ends with": 2}.get(e.op, 1)
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


_LITERALS = (ast.StringLit, ast.NumberLit, ast.BoolLit)


def _is_lookup(e: ast.Compare) -> bool:
    """An equality or membership test against constants (``x == "US"``, ``x in ["A", "B"]``): the
    clauses an event's rules are indexed by, so they are tested first (see ``cheap_first``)."""
    if e.op == "==":
        return isinstance(e.left, _LITERALS) or isinstance(e.right, _LITERALS)
    if e.op == "in":
        return isinstance(e.right, (ast.ListLit, ast.Name))
    return False


def cheap_first(cond: ast.Expr) -> list[tuple[int, ast.Expr]]:
    """The top-level clauses of a condition with their written index, cheapest first (stable), and
    among equally cheap ones, equality and membership tests against constants first.

    Conditions have no side effects and never raise, so the order of an ``and``'s operands does
    not change its value: testing `order.shipping.country == "US"` before looping over the items
    saves the loop for most orders.  The deciding clause of a rule that did not fire is then the
    first false clause in this order (its written index is kept for the explanation).  A rule
    whose first clause is such a test can be indexed by it (compiler.py, ``_index``): a rule the
    index skips has that clause false, which is then its deciding clause, as without the index."""
    parts = cond.operands if isinstance(cond, ast.BoolOp) and cond.op == "and" else (cond,)

    def key(pair: tuple[int, ast.Expr]) -> tuple[int, int, int]:
        index, part = pair
        lookup = isinstance(part, ast.Compare) and _is_lookup(part)
        return cost(part), 0 if lookup else 1, index

    return sorted(enumerate(parts), key=key)


def _is_record_binder(obj: ast.Expr, scope: Scope, t: T.Type) -> bool:
    """A binder over a list of the order model's records (items, shipments, notes): always a dict."""
    if not isinstance(obj, ast.Name) or not isinstance(t, T.Record) or t.extra is not None:
        return False
    binding = scope.get(obj.id)
    return binding is not None and binding.kind == "binder" and not t.name.startswith("event")
