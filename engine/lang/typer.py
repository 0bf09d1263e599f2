"""The expression typer: the static type of every rule expression in a scope, problems located.

The checker (``checker.py``) drives it over rules and lets; the compiler reuses the types it
inferred.  Names, scopes and the typing rules of operators live here too."""

from __future__ import annotations

from dataclasses import dataclass

from ruledesk.grammar import ast
from ruledesk.engine.model import types as T
from ruledesk.grammar.diagnostics import Diagnostics, closest, did_you_mean
from ruledesk.engine.model.order import parse_datetime
from ruledesk.engine.lang.patterns import LinearPattern, PatternError, compile_pattern

ROOTS = ("order", "event", "store")
RESERVED = frozenset({"not", "any", "all", "count", "sum", "true", "false", "null"})
ORDERED = (T.NUMBER, T.STRING, T.DATETIME, T.DURATION)


@dataclass(frozen=True)
class Binding:
    """What a name means inside an expression."""

    kind: str  # "root" | "binder" | "param" | "let"
    type: T.Type
    let: ast.Let | None = None
    arg: ast.Expr | None = None  # for a let parameter at a use site: the argument expression
    arg_scope: "Scope | None" = None


@dataclass(frozen=True)
class Scope:
    names: dict[str, Binding]
    in_let: str | None = None

    def bind(self, name: str, binding: Binding) -> "Scope":
        names = dict(self.names)
        names[name] = binding
        return Scope(names, self.in_let)

    def get(self, name: str) -> Binding | None:
        return self.names.get(name)



class Typer:
    """Infers the static type of an expression in a scope, reporting problems as it goes."""

    def __init__(self, lets: dict[str, ast.Let], diagnostics: Diagnostics, base_scope: Scope,
                 recursive: frozenset[str] = frozenset()) -> None:
        self.lets = lets
        self.diagnostics = diagnostics
        self.base_scope = base_scope  # order, event, store for the rule being checked
        self.recursive = recursive
        self._expanding: list[str] = []
        self.generic: Diagnostics | None = None  # what the generic let check reported
        self.sources: dict[str, str] = {}  # rule file texts, to quote code in hints
        self.event_fields: dict[str, list[str]] = {}  # payload field -> the events that have it
        self.no_payload: str | None = None  # why `event` has no payload (button and schedule rules)
        self.incomplete = False  # a file did not parse: unknown names may be its lets
        # (id(expr), id(scope)) -> (expr, scope, type); holding expr and scope keeps their ids unique.
        self._memo: dict[tuple[int, int], tuple[ast.Expr, Scope, T.Type]] = {}

    # -- helpers
    def err(self, loc: ast.Loc, code: str, message: str, suggestion: str | None = None,
            length: int | None = None) -> None:
        self.diagnostics.error(loc, code, message, suggestion, length)

    def expect_bool(self, expr: ast.Expr, scope: Scope, what: str) -> None:
        t = self.infer(expr, scope)
        if t not in (T.BOOL, T.NULL) and not t.is_any():
            hint = "write `… is set` to test that a value is present" if t in (T.STRING, T.NUMBER) else None
            self.err(expr.loc, "E301", f"{what} must be true or false, not {t}", hint)

    def element_type(self, expr: ast.Expr, scope: Scope) -> T.Type:
        t = self.infer(expr, scope)
        if isinstance(t, T.ListOf):
            return t.element
        if t.is_any() or t == T.NULL:
            return T.ANY
        self.err(expr.loc, "E305", f"expected a list to iterate over, found {t}",
                 "iterate over a list such as order.order_items")
        return T.ANY

    def bind_var(self, var: str, loc: ast.Loc, elem: T.Type, scope: Scope) -> Scope:
        if var in RESERVED or var in ROOTS:
            self.err(loc, "E403", f"{var!r} is reserved and cannot name a binder", "choose another name, such as i",
                     length=len(var))
        return scope.bind(var, Binding("binder", elem))

    # -- inference
    def infer(self, e: ast.Expr, scope: Scope) -> T.Type:
        key = (id(e), id(scope))
        hit = self._memo.get(key)
        if hit is not None:
            return hit[2]
        result = getattr(self, "t_" + type(e).__name__)(e, scope)
        self._memo[key] = (e, scope, result)
        return result

    def t_StringLit(self, e, scope):
        return T.STRING

    def t_NumberLit(self, e, scope):
        return T.NUMBER

    def t_DurationLit(self, e, scope):
        return T.DURATION

    def t_BoolLit(self, e, scope):
        return T.BOOL

    def t_NullLit(self, e, scope):
        return T.NULL

    def t_ListLit(self, e, scope):
        elem: T.Type = T.NULL
        for item in e.items:
            elem = T.unify(elem, self.infer(item, scope))
        return T.ListOf(T.ANY if elem == T.NULL else elem)

    def t_Name(self, e, scope):
        binding = scope.get(e.id)
        if binding is not None:
            if binding.kind == "param" and binding.arg is not None:
                return self.infer(binding.arg, binding.arg_scope or scope)
            return binding.type
        if e.id in self.lets:
            let = self.lets[e.id]
            if let.params is not None:
                self.err(e.loc, "E302", f"{e.id!r} is a function of {len(let.params)} argument(s): call it",
                         f"write {e.id}({', '.join(let.params)})")
                return T.ANY
            return self.expand(let, (), scope, e.loc)
        visible = list(scope.names) + list(self.lets)
        hint = did_you_mean(closest(e.id, [n for n in visible if n != scope.in_let]), quote=False)
        if scope.in_let is not None and hint is None:
            let = self.lets.get(scope.in_let)
            params = list(let.params or ()) if let is not None else []
            call = f"{scope.in_let}({', '.join(params + [e.id])})"
            hint = f"a let sees only its parameters, order, event, store and other lets: write let {call} = ... and call {call}"
        elif e.id == "item":
            hint = "item is the current element inside a for block; use any/all or a for block"
        if not self.incomplete:
            self.err(e.loc, "E206", f"unknown name {e.id!r}", hint)
        return T.ANY

    def expand(self, let: ast.Let, args: tuple[ast.Expr, ...], scope: Scope, use_loc: ast.Loc,
               call_text: str | None = None) -> T.Type:
        """Type a let's body where it is used.  A problem the body has only with these arguments
        (the generic check of the let, with parameters of any type, did not see it) is reported at
        the call, naming the let body's location."""
        if let.name in self.recursive or let.name in self._expanding:
            return T.ANY
        let_scope = Scope({k: v for k, v in self.base_scope.names.items() if k in ROOTS}, let.name)
        params = let.params or ()
        for index, param in enumerate(params):
            if index < len(args):
                let_scope = let_scope.bind(param, Binding("param", T.ANY, arg=args[index], arg_scope=scope))
            else:
                let_scope = let_scope.bind(param, Binding("param", T.ANY))  # missing: reported as E302
        outer, self.diagnostics = self.diagnostics, Diagnostics()
        self._expanding.append(let.name)
        try:
            result = self.infer(let.body, let_scope)
        finally:
            self._expanding.pop()
            inner, self.diagnostics = self.diagnostics, outer
        for d in inner.items:
            if outer.seen(d) or self.generic_let_problem(d):
                continue
            where = f"in {call_text or let.name}"
            outer.error(use_loc, d.code, f"{d.message} {where}",
                        f"{let.name}'s body ({d.loc}) is {_short(self.let_text(let))}; "
                        + (d.suggestion or "pass a value of the right type"))
        return result

    def generic_let_problem(self, d) -> bool:
        """Whether a diagnostic was already reported by the generic check of the let bodies."""
        return self.generic is not None and self.generic.seen(d)

    def let_text(self, let: ast.Let) -> str:
        return self.text(let.body)

    def text(self, node: ast.Node) -> str:
        return ast.source_text(node, self.sources)

    def t_Attr(self, e, scope):
        base = self.infer(e.obj, scope)
        return self.field_type(base, e.name, e.name_loc if e.name_loc.line else e.loc, e.obj)

    def field_type(self, base: T.Type, name: str, loc: ast.Loc, obj: ast.Expr) -> T.Type:
        if isinstance(base, T.Record):
            if name in base.fields:
                return base.fields[name]
            if name in base.hidden:
                self.err(loc, "E205", f"{base.name}.{name} is {base.hidden[name]}: rules and templates cannot read it",
                         "only job handlers use secrets (docs/jobs.md)")
                return T.ANY
            if base.extra is not None:
                return base.extra
            hint = did_you_mean(closest(name, list(base.fields)), quote=False)
            if base.name.startswith("event") and name in self.event_fields:
                owners = " or ".join(f'"{e}"' for e in self.event_fields[name])
                hint = f"event.{name} is in the payload of {owners}"
                if self.no_payload:
                    hint = f"{self.no_payload}; {hint}"
            self.err(loc, "E205", f"{base.name} has no field {name!r}", hint)
            return T.ANY
        if isinstance(base, T.MapOf):
            return base.value
        if base.is_any() or base == T.NULL:
            return T.ANY
        if isinstance(base, T.ListOf):
            self.err(loc, "E301", f"a list has no field {name!r}",
                     "use any/all/count over the list, or index it with [0]")
            return T.ANY
        self.err(loc, "E301", f"a {base} has no field {name!r}")
        return T.ANY

    def t_Index(self, e, scope):
        base = self.infer(e.obj, scope)
        key = self.infer(e.key, scope)
        if isinstance(base, T.ListOf):
            if key not in (T.NUMBER,) and not key.is_any():
                self.err(e.key.loc, "E301", f"a list index must be a number, not {key}")
            return base.element
        if isinstance(base, (T.Record, T.MapOf)):
            if key != T.STRING and not key.is_any():
                self.err(e.key.loc, "E301", f"a map key must be a string, not {key}")
                return T.ANY
            if isinstance(e.key, ast.StringLit):
                return self.field_type(base, e.key.value, e.key.loc, e.obj)
            return base.value if isinstance(base, T.MapOf) else (base.extra or T.ANY)
        if base.is_any() or base == T.NULL:
            return T.ANY
        self.err(e.loc, "E301", f"a {base} cannot be indexed")
        return T.ANY

    def t_Call(self, e, scope):
        if e.func in self.lets and self.lets[e.func].params is not None:
            let = self.lets[e.func]
            if len(e.args) != len(let.params):
                self.err(e.loc, "E302", f"{e.func} takes {len(let.params)} argument(s), got {len(e.args)}",
                         f"write {e.func}({', '.join(let.params)})")
            for arg in e.args:
                self.infer(arg, scope)
            return self.expand(let, e.args, scope, e.loc, self.text(e))
        if e.func not in ast.BUILTIN_FUNCTIONS:
            if e.func in self.lets:
                self.err(e.loc, "E302", f"{e.func!r} is a value, not a function", f"write {e.func} without ( )")
                return T.ANY
            names = list(ast.BUILTIN_FUNCTIONS) + [n for n, l in self.lets.items() if l.params is not None]
            for arg in e.args:
                self.infer(arg, scope)
            if self.incomplete:
                return T.ANY
            self.err(e.loc, "E207", f"unknown function {e.func!r}",
                     did_you_mean(closest(e.func, names), quote=False) or "built-ins: " + ", ".join(ast.BUILTIN_FUNCTIONS))
            return T.ANY
        low, high = ast.BUILTIN_FUNCTIONS[e.func]
        args = [self.infer(a, scope) for a in e.args]
        if not low <= len(e.args) <= high:
            want = str(low) if low == high else f"{low} or {high}"
            self.err(e.loc, "E302", f"{e.func}() takes {want} argument(s), got {len(e.args)}")
            return {"now": T.DATETIME, "date": T.DATETIME, "len": T.NUMBER, "round": T.NUMBER}.get(e.func, T.STRING)
        if e.func in ("lower", "upper"):
            self._want(e.args, args, (T.STRING,), e.func)
            return T.STRING
        if e.func == "len":
            if args and not (args[0] == T.STRING or isinstance(args[0], (T.ListOf, T.MapOf, T.Record))
                             or args[0].is_any() or args[0] == T.NULL):
                self.err(e.args[0].loc, "E301", f"len() takes a string, list or map, not {args[0]}")
            return T.NUMBER
        if e.func == "now":
            return T.DATETIME
        if e.func == "date":
            self._want(e.args, args, (T.STRING,), "date")
            if e.args and isinstance(e.args[0], ast.StringLit) and parse_datetime(e.args[0].value) is None:
                self.err(e.args[0].loc, "E208", f"date({e.args[0].raw}) is not a date",
                         'write "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS"')
            return T.DATETIME
        if e.func == "round":
            self._want(e.args, args, (T.NUMBER,), "round")
            return T.NUMBER
        return T.ANY

    def _want(self, exprs, types, allowed, func):
        for expr, t in zip(exprs, types):
            if t not in allowed and not t.is_any() and t != T.NULL:
                self.err(expr.loc, "E301", f"{func}() takes a {' or '.join(map(str, allowed))}, not {t}")

    def t_Not(self, e, scope):
        self.expect_bool(e.operand, scope, "the operand of not")
        return T.BOOL

    def t_Neg(self, e, scope):
        t = self.infer(e.operand, scope)
        if t not in (T.NUMBER, T.DURATION, T.NULL) and not t.is_any():
            self.err(e.loc, "E301", f"cannot negate a {t}")
        return t if t != T.NULL else T.NUMBER

    def t_BoolOp(self, e, scope):
        for operand in e.operands:
            self.expect_bool(operand, scope, f"each side of {e.op}")
        return T.BOOL

    def t_BinOp(self, e, scope):
        left, right = self.infer(e.left, scope), self.infer(e.right, scope)
        result = arithmetic_type(e.op, left, right)
        if result is None:
            hint = None
            if e.op == "+" and {left, right} == {T.STRING, T.NUMBER}:
                hint = "+ joins two strings or adds two numbers, never one of each"
            self.err(e.loc, "E301", f"cannot apply {e.op} to {left} and {right}", hint)
            return T.ANY
        return result

    def t_Compare(self, e, scope):
        left, right = self.infer(e.left, scope), self.infer(e.right, scope)
        op = e.op
        if op in ("==", "!="):
            if not comparable_eq(left, right):
                self.err(e.loc, "E301", f"comparing {left} with {right} is never true",
                         self.compare_hint(e, left, right))
        elif op in ("<", "<=", ">", ">="):
            if not comparable_order(left, right):
                hint = self.compare_hint(e, left, right) or (
                    "only two numbers, two strings, two datetimes or two durations can be ordered; "
                    "compare like with like")
                self.err(e.loc, "E301", f"cannot order {left} against {right} with {op}", hint)
        elif op in ("in", "not in"):
            if right == T.STRING:
                self.err(e.right.loc, "E301", f"{op} tests list membership, and the right side is a string",
                         "to look for a substring write `x contains \"...\"`")
            elif isinstance(right, T.ListOf):
                if not comparable_eq(left, right.element):
                    self.err(e.loc, "E301", f"a {left} is never in a {right}")
            elif not right.is_any() and right != T.NULL:
                self.err(e.right.loc, "E301", f"{op} needs a list on its right, not {right}")
        elif op == "contains":
            if left == T.STRING:
                if right not in (T.STRING, T.NULL) and not right.is_any():
                    self.err(e.right.loc, "E301", f"a string can only contain a string, not {right}")
            elif isinstance(left, T.ListOf):
                if not comparable_eq(left.element, right):
                    self.err(e.loc, "E301", f"a {left} never contains a {right}")
            elif not left.is_any() and left != T.NULL:
                self.err(e.left.loc, "E301", f"contains needs a string or a list on its left, not {left}")
        elif op in ("starts with", "ends with"):
            for side, t in ((e.left, left), (e.right, right)):
                if t not in (T.STRING, T.NULL) and not t.is_any():
                    self.err(side.loc, "E301", f"{op} works on strings, not {t}")
        elif op == "matches":
            if left not in (T.STRING, T.NULL) and not left.is_any():
                self.err(e.left.loc, "E301", f"matches works on strings, not {left}")
            self.regex_of(e.right, scope)
        return T.BOOL

    def compare_hint(self, e: ast.Compare, left: T.Type, right: T.Type) -> str | None:
        """What the author most likely meant by comparing these two kinds of value."""
        if {left, right} == {T.DATETIME, T.DURATION}:
            moment, age = (e.left, e.right) if left == T.DATETIME else (e.right, e.left)
            return f"to compare with an age, write {self.text(moment)} < now() - {self.text(age)}"
        if {left, right} == {T.STRING, T.NUMBER}:
            quoted = e.left if left == T.STRING else e.right
            if isinstance(quoted, ast.StringLit) and _is_number(quoted.value):
                return f"write {quoted.value} without quotes: it is a number"
            if e.op in ("==", "!="):
                return "a string is never equal to a number; compare like with like"
        return None

    def regex_of(self, pattern: ast.Expr, scope: Scope) -> LinearPattern | None:
        literal = self.literal_string(pattern, scope)
        if literal is None:
            self.err(pattern.loc, "E303", "matches takes a string literal (or a let bound to one)",
                     'write matches "^[A-Z]+-\\d+$"')
            return None
        text, loc = literal
        try:
            return compile_pattern(text)
        except PatternError as exc:
            self.err(loc, "E303", exc.message, exc.hint)
            return None

    def literal_string(self, e: ast.Expr, scope: Scope) -> tuple[str, ast.Loc] | None:
        if isinstance(e, ast.StringLit):
            return e.value, e.loc
        if isinstance(e, ast.Name) and scope.get(e.id) is None and e.id in self.lets:
            let = self.lets[e.id]
            if let.params is None and isinstance(let.body, ast.StringLit):
                return let.body.value, let.body.loc
        return None

    def t_Test(self, e, scope):
        t = self.infer(e.operand, scope)
        if e.op in ("is empty", "is not empty"):
            if not (t == T.STRING or isinstance(t, (T.ListOf, T.MapOf, T.Record)) or t.is_any() or t == T.NULL):
                self.err(e.loc, "E301", f"a {t} cannot be empty", "is empty works on strings, lists and maps")
        return T.BOOL

    def t_Quantifier(self, e, scope):
        elem = self.element_type(e.iterable, scope)
        inner = self.bind_var(e.var, located(e.var_loc, e.loc), elem, scope)
        self.expect_bool(e.cond, inner, f"the where condition of {e.kind}")
        return T.BOOL

    def t_Count(self, e, scope):
        elem = self.element_type(e.iterable, scope)
        if e.var is not None and e.cond is not None:
            self.expect_bool(e.cond, self.bind_var(e.var, located(e.var_loc, e.loc), elem, scope),
                             "the where condition of count")
        return T.NUMBER

    def t_Sum(self, e, scope):
        if e.var is None:
            elem = self.element_type(e.expr, scope)
            if elem not in (T.NUMBER, T.NULL) and not elem.is_any():
                self.err(e.expr.loc, "E301", f"sum() adds numbers, not {elem}")
            return T.NUMBER
        elem = self.element_type(e.iterable, scope)
        inner = self.bind_var(e.var, located(e.var_loc, e.loc), elem, scope)
        if e.cond is not None:
            self.expect_bool(e.cond, inner, "the where condition of sum")
        t = self.infer(e.expr, inner)
        if t not in (T.NUMBER, T.NULL) and not t.is_any():
            self.err(e.expr.loc, "E301", f"sum() adds numbers, not {t}")
        return T.NUMBER


def arithmetic_type(op: str, left: T.Type, right: T.Type) -> T.Type | None:
    """Result type of ``left op right``, or None when the operation is a type error."""
    if left.is_any() or right.is_any():
        return T.ANY
    if left == T.NULL:
        return right if right != T.NULL else T.NULL
    if right == T.NULL:
        return left
    table = {
        ("+", T.NUMBER, T.NUMBER): T.NUMBER, ("+", T.STRING, T.STRING): T.STRING,
        ("+", T.DATETIME, T.DURATION): T.DATETIME, ("+", T.DURATION, T.DATETIME): T.DATETIME,
        ("+", T.DURATION, T.DURATION): T.DURATION,
        ("-", T.NUMBER, T.NUMBER): T.NUMBER, ("-", T.DATETIME, T.DURATION): T.DATETIME,
        ("-", T.DATETIME, T.DATETIME): T.DURATION, ("-", T.DURATION, T.DURATION): T.DURATION,
        ("*", T.NUMBER, T.NUMBER): T.NUMBER, ("*", T.DURATION, T.NUMBER): T.DURATION,
        ("*", T.NUMBER, T.DURATION): T.DURATION,
        ("/", T.NUMBER, T.NUMBER): T.NUMBER, ("/", T.DURATION, T.NUMBER): T.DURATION,
        ("%", T.NUMBER, T.NUMBER): T.NUMBER,
    }
    return table.get((op, left, right))


def comparable_eq(a: T.Type, b: T.Type) -> bool:
    if a.is_any() or b.is_any() or a == T.NULL or b == T.NULL:
        return True
    if isinstance(a, T.ListOf) and isinstance(b, T.ListOf):
        return comparable_eq(a.element, b.element)
    if isinstance(a, (T.Record, T.MapOf)) and isinstance(b, (T.Record, T.MapOf)):
        return True
    return a == b


def comparable_order(a: T.Type, b: T.Type) -> bool:
    if a.is_any() or b.is_any() or a == T.NULL or b == T.NULL:
        return (a.is_any() or a == T.NULL or a in ORDERED) and (b.is_any() or b == T.NULL or b in ORDERED)
    return a == b and a in ORDERED


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text != ""


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def located(preferred: ast.Loc, fallback: ast.Loc) -> ast.Loc:
    """The more precise of two locations: ``preferred`` unless the parser left it empty."""
    return preferred if preferred.line else fallback
