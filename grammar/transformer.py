"""Lark parse tree -> ruledesk AST: one method per grammar alias, each node with its location."""

from __future__ import annotations

import dataclasses
import decimal
import re

from lark import Token, Transformer

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostics

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_NUMBER_DIGITS = 100  # significant digits of a number literal (orders hold the same: engine/model/order.py)
MAX_PRIORITY_DIGITS = 18
MAX_DURATION_SECONDS = 999_999_999 * 86_400 + 86_399  # Python's longest timedelta
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


def unescape(raw: str) -> str:
    """The value of a string literal: ``\\" \\\\ \\n \\t \\uXXXX``; any other backslash stays as written."""
    body = raw[1:-1]
    if "\\" not in body:
        return body

    def replace(m: re.Match[str]) -> str:
        seq = m.group(1)
        if seq in _ESCAPES:
            return _ESCAPES[seq]
        if len(seq) == 5:
            return chr(int(seq[1:], 16))
        return m.group(0)

    return _ESCAPE_RE.sub(replace, body)


class ASTBuilder(Transformer):
    """Builds the AST while Lark parses (an inline LALR transformer: no parse tree is ever built).

    Locations come from the tokens: keywords whose position matters are named terminals in the
    grammar (WHEN, THEN, NOT, ...) so they reach these methods; a node spans from its first to
    its last token or child node.
    """

    def __init__(self) -> None:
        super().__init__()
        self.path = "<string>"
        self.diagnostics = Diagnostics()

    # -- locations
    def _tok(self, token: Token) -> ast.Loc:
        return ast.Loc(self.path, token.line, token.column, token.end_line, token.end_column)

    def _span(self, first, last) -> ast.Loc:
        """From the start of ``first`` to the end of ``last`` (each a Token or a node)."""
        if isinstance(first, Token):
            line, col = first.line, first.column
        else:
            line, col = first.loc.line, first.loc.col
        if isinstance(last, Token):
            end_line, end_col = last.end_line, last.end_column
        else:
            end_line, end_col = last.loc.end_line, last.loc.end_col
        return ast.Loc(self.path, line, col, end_line, end_col)

    # -- top level
    def start(self, items):
        return list(items)

    def let_value(self, children):
        name, body = children
        return ast.Let(str(name), None, body, self._tok(name))

    def let_func(self, children):
        name, *rest = children
        body = rest[-1]
        params = [p for p in rest[:-1] if p is not None]
        return ast.Let(str(name), tuple(str(p) for p in params), body, self._tok(name),
                       tuple(self._tok(p) for p in params))

    def rule(self, children):
        name_tok, *middle, rbrace = children
        priority, disabled, options = 0, False, []
        trigger = condition = None
        actions: tuple = ()
        then_loc = ast.NOWHERE
        for child in middle:
            if isinstance(child, tuple) and child and child[0] == "priority":
                if "priority" in options:
                    self.diagnostics.error(child[2], "E404", "priority is given twice", "keep one priority")
                priority = child[1]
                options.append("priority")
            elif isinstance(child, tuple) and child and child[0] == "disabled":
                if "disabled" in options:
                    self.diagnostics.error(child[1], "E404", "disabled is given twice", "keep one disabled")
                disabled = True
                options.append("disabled")
            elif isinstance(child, (ast.EventTrigger, ast.EveryTrigger, ast.ButtonTrigger)):
                trigger = child
            elif isinstance(child, _Condition):
                condition = child.expr
            elif isinstance(child, _Then):
                actions, then_loc = child.statements, child.loc
        return ast.Rule(unescape(name_tok), priority, disabled, trigger, condition, actions, tuple(options),
                        self._tok(name_tok), self._tok(rbrace), then_loc)

    def priority(self, children):
        value, loc = children[0]
        return ("priority", value, loc)

    def disabled(self, children):
        return ("disabled", self._tok(children[0]))

    def signed_int(self, children):
        sign = -1 if children[0] == "-" else 1
        number = children[-1]
        first = next(c for c in children if c is not None)
        loc = self._span(first, number)
        if "." in number:
            written = ("-" if sign < 0 else "") + number
            self.diagnostics.error(loc, "E404", f"priority must be a whole number, not {written}",
                                   f"write priority {written.split('.')[0]}")
            return 0, loc
        if len(number) > MAX_PRIORITY_DIGITS:
            self.diagnostics.error(loc, "E404", f"priority has more than {MAX_PRIORITY_DIGITS} digits",
                                   "priorities order rules: small whole numbers such as 100 are enough")
            return 0, loc
        return sign * int(number), loc

    def when_events(self, children):
        when, *names = children
        return ast.EventTrigger(tuple(ast.EventRef(unescape(t), self._tok(t)) for t in names),
                                self._span(when, names[-1]))

    def when_every(self, children):
        when, duration, folder = children
        every = self.duration([duration]) if duration.type == "DURATION" else self.bad_number([duration])
        return ast.EveryTrigger(every, unescape(folder), self._span(when, folder))

    def when_button(self, children):
        when, label = children
        return ast.ButtonTrigger(unescape(label), self._span(when, label))

    def condition(self, children):
        return _Condition(children[0])

    def then(self, children):
        then, *statements = children
        return _Then(tuple(statements), self._tok(then))

    def action_call(self, children):
        name_tok, *args = children
        args = tuple(a for a in args if isinstance(a, ast.Arg))  # drops the `)` token and placeholders
        return ast.ActionCall(unescape(name_tok), args, self._tok(name_tok))

    def arg(self, children):
        name, value = children
        return ast.Arg(str(name), value, self._tok(name))

    def for_block(self, children):
        keyword, var, iterable, cond, *body, rbrace = children
        return ast.ForBlock(str(var), iterable, cond, tuple(body), self._tok(keyword), self._tok(rbrace),
                            self._tok(var))

    # -- expressions
    def _bool(self, op, children):
        left, right = children
        operands = []
        for side in (left, right):
            if isinstance(side, ast.BoolOp) and side.op == op and not side.grouped:
                operands.extend(side.operands)
            else:
                operands.append(side)
        return ast.BoolOp(op, tuple(operands), self._span(left, right))

    def or_(self, children):
        return self._bool("or", children)

    def and_(self, children):
        return self._bool("and", children)

    def not_(self, children):
        keyword, operand = children
        return ast.Not(operand, self._span(keyword, operand))

    def quantifier(self, children):
        kind, var, iterable, cond = children
        return ast.Quantifier(str(kind), str(var), iterable, cond, self._span(kind, cond), self._tok(var))

    def compare(self, children):
        left, op, right = children
        return ast.Compare(str(op), left, right, self._span(left, right))

    def _cmp(op):  # noqa: N805 - a factory used in the class body
        def method(self, children):
            return ast.Compare(op, children[0], children[1], self._span(children[0], children[1]))
        return method

    in_ = _cmp("in")
    not_in = _cmp("not in")
    contains = _cmp("contains")
    starts_with = _cmp("starts with")
    ends_with = _cmp("ends with")
    matches = _cmp("matches")

    def _test(op):  # noqa: N805
        def method(self, children):
            return ast.Test(op, children[0], self._span(children[0], children[-1]))
        return method

    is_set = _test("is set")
    is_not_set = _test("is not set")
    is_empty = _test("is empty")
    is_not_empty = _test("is not empty")
    del _cmp, _test

    def binop(self, children):
        left, op, right = children
        return ast.BinOp(str(op), left, right, self._span(left, right))

    def neg(self, children):
        sign, operand = children
        return ast.Neg(operand, self._span(sign, operand))

    def attr(self, children):
        obj, name = children
        return ast.Attr(obj, str(name), self._span(obj, name), self._tok(name))

    def index(self, children):
        obj, key, close = children
        return ast.Index(obj, key, self._span(obj, close))

    def name(self, children):
        return ast.Name(str(children[0]), self._tok(children[0]))

    def call(self, children):
        func, *args, close = children
        return ast.Call(str(func), tuple(a for a in args if a is not None), self._span(func, close))

    def string(self, children):
        raw = str(children[0])
        return ast.StringLit(unescape(raw), raw, self._tok(children[0]))

    def number(self, children):
        raw = str(children[0])
        if len(raw.replace(".", "").lstrip("0")) > MAX_NUMBER_DIGITS:
            self.diagnostics.error(self._tok(children[0]), "E105", f"a number has at most {MAX_NUMBER_DIGITS} digits",
                                   "numbers in rules are exact decimals of up to 100 digits", length=len(raw))
            return ast.NumberLit(0, raw, self._tok(children[0]))
        value = decimal.Decimal(raw) if "." in raw else int(raw)
        return ast.NumberLit(value, raw, self._tok(children[0]))

    def duration(self, children):
        raw = str(children[0])
        seconds = int(raw[:-1]) * DURATION_UNITS[raw[-1]] if len(raw) <= 16 else MAX_DURATION_SECONDS + 1
        if seconds > MAX_DURATION_SECONDS:
            self.diagnostics.error(self._tok(children[0]), "E105", f"duration {raw[:20]}{'...' if len(raw) > 20 else ''} "
                                   "is longer than the longest one (999,999,999 days)", "write a shorter duration",
                                   length=len(raw))
            seconds = 0
        return ast.DurationLit(seconds, raw, self._tok(children[0]))

    def bad_number(self, children):
        raw = str(children[0])
        loc = self._tok(children[0])
        digits = re.match(r"[0-9.]+", raw).group(0)
        unit = raw[len(digits):]
        if unit[:1] in DURATION_UNITS and "." in digits:
            hint = f"durations are whole numbers: write {_whole(digits, unit[0])}"
        elif unit[:1] in DURATION_UNITS:
            hint = f"write {digits}{unit[0]}: a duration is a whole number and one of s, m, h, d, w"
        else:
            hint = "durations are a whole number and one of s, m, h, d, w (30m, 6h, 2d, 1w)"
        self.diagnostics.error(loc, "E105", f"bad number or duration {raw!r}", hint)
        if unit[:1] in DURATION_UNITS:
            return ast.DurationLit(0, raw, loc)  # typed as the duration it meant: no second, false error
        return ast.NumberLit(0, raw, loc)

    def true(self, children):
        return ast.BoolLit(True, self._tok(children[0]))

    def false(self, children):
        return ast.BoolLit(False, self._tok(children[0]))

    def null(self, children):
        return ast.NullLit(self._tok(children[0]))

    def list(self, children):
        open_, *items, close = children
        return ast.ListLit(tuple(c for c in items if c is not None), self._span(open_, close))

    def group(self, children):
        open_, inner, close = children
        # The node spans its parentheses, so explanations quote `(a or b)` as written.
        changes: dict = {"loc": self._span(open_, close)}
        if isinstance(inner, ast.BoolOp):
            # Keep `a and (b and c)` as written: a grouped operand is not flattened into its parent.
            changes["grouped"] = True
        return dataclasses.replace(inner, **changes)

    def count(self, children):
        keyword, body, cond, close = children
        loc = self._span(keyword, close)
        if isinstance(body, ast.Compare) and body.op == "in" and isinstance(body.left, ast.Name):
            return ast.Count(body.left.id, body.right, cond, loc, body.left.loc)
        if cond is not None:
            self.diagnostics.error(body.loc, "E100", "count(... where ...) needs a binder: count(X in LIST where COND)",
                                   "write count(i in LIST where ...)")
        return ast.Count(None, body, None, loc)

    def sum(self, children):
        keyword, expr, var, iterable, cond, close = children
        return ast.Sum(expr, str(var) if var is not None else None, iterable, cond, self._span(keyword, close),
                       self._tok(var) if var is not None else ast.NOWHERE)


class _Condition:
    __slots__ = ("expr",)

    def __init__(self, expr: ast.Expr) -> None:
        self.expr = expr


class _Then:
    __slots__ = ("statements", "loc")

    def __init__(self, statements: tuple, loc: ast.Loc) -> None:
        self.statements = statements
        self.loc = loc


def _whole(digits: str, unit: str) -> str:
    seconds = decimal.Decimal(digits) * DURATION_UNITS[unit]
    for u in ("w", "d", "h", "m", "s"):
        if seconds % DURATION_UNITS[u] == 0:
            return f"{int(seconds / DURATION_UNITS[u])}{u}"
    return f"{int(seconds)}s"
