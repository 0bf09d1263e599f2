"""The canonical layout of a rule file (``ruledesk fmt``): the parsed rules printed back, comments kept.

Layout (docs/fmt.md says the same for rule authors):

- 4-space indentation, no trailing spaces, one newline at the end of the file.
- Exactly one blank line between top-level items, and none inside them; one-line ``let``s written
  on consecutive lines stay together as a block.
- ``let name = expr`` / ``let name(a, b) = expr`` on one line when it fits in 100 columns; else
  the line breaks after ``=`` and the body follows indented, one ``and``/``or`` operand per line,
  each continuation line starting with the operator.
- ``rule "Name" priority N disabled {`` (options in the order written), then ``when ...`` (several
  events that do not fit in 100 columns: one per line, aligned under the first),
  ``if ...`` and ``then`` on their own lines, indented; actions one per line, indented by 4 more;
  ``for X in L where C {`` blocks indent their actions by 4 more; ``}`` lines up with its opener.
  A long ``if`` breaks at its top-level ``and``/``or``: continuation lines start with the operator,
  aligned under the first operand.
- ``"Action"(param: value, other: value)``; when that does not fit, one parameter per line, aligned
  after the ``(``.
- Expressions: single spaces around binary operators, ``[a, b]``, ``f(a, b)``, parentheses only
  where the tree needs them (LANGUAGE.md 9.1; a same-operator ``and``/``or`` nested in another, as
  in ``a and (b and c)``; a quantifier that is not the last operand; ``(6h).x``); ``- -1`` keeps
  its two minus signs apart.  Literals, rule, event and action names are printed as written.
- Every comment is kept.  A comment alone on its line goes just above the next line the formatter
  prints, at that line's indentation (inside the block when that line is a closing ``}``; at the
  end of the file when nothing follows).  A comment after code goes at the end of the last printed
  line whose first construct starts on or above the comment's line; when two land on one line, the
  earlier ones move just above it.  A comment between the operands of a condition or a ``let``
  body, or between an action's parameters, keeps that construct broken one part per line.  At top
  level, a blank line the author left above a comment, or between a comment and the item below it,
  is kept (one).

``format_source`` re-parses its own output and refuses (``FormatError``) unless it means the same
rules and keeps every comment, so a formatter bug can never change a rule file.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from dataclasses import dataclass

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostic, Diagnostics
from ruledesk.grammar import parse

WIDTH = 100
STEP = 4
BUG_CODE = "E900"

# Binding strength, loosest first (LANGUAGE.md 9.1).
_QUANTIFIER, _OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _NEG, _POSTFIX = range(9)
_BINOP_LEVEL = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "%": _PRODUCT}

_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#.*')


class FormatError(Exception):
    """The text cannot be formatted; ``diagnostics`` says why (a syntax error, or a formatter bug)."""

    def __init__(self, message: str, diagnostics: list[Diagnostic]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


def format_source(text: str, path: str = "<string>") -> str:
    """The canonical layout of one rule file; raises ``FormatError`` if it does not parse."""
    diagnostics = Diagnostics()
    module = parse(text, path, diagnostics)
    if diagnostics:
        errors = diagnostics.errors
        raise FormatError("\n".join(d.headline() for d in errors), errors)
    output = _Printer(module).render()
    _verify(module, output)
    return output


def check_formatted(text: str, path: str = "<string>") -> bool:
    """Whether ``text`` is already in the canonical layout; raises ``FormatError`` if it does not parse."""
    return format_source(text, path) == text


def _verify(module: ast.Module, output: str) -> None:
    """The safety net: the output must mean the same rules and keep every comment."""
    diagnostics = Diagnostics()
    again = parse(output, module.path, diagnostics)
    if diagnostics:
        problem = "does not parse"
    elif again != module:
        problem = "does not mean the same rules"
    elif _comment_texts(again) != _comment_texts(module):
        problem = "loses a comment"
    else:
        return
    message = f"formatter bug: the formatted text {problem}; nothing was written"
    loc = ast.Loc(module.path, 1, 1)
    bug = Diagnostic(loc, BUG_CODE, message, "please report this file to the ruledesk developers")
    raise FormatError(bug.headline(), [bug])


def _comment_texts(module: ast.Module) -> Counter[str]:
    return Counter(c.text.rstrip() for c in module.comments)


# ---- expressions ----------------------------------------------------------------------

def _level(e: ast.Expr) -> int:
    match e:
        case ast.Quantifier():
            return _QUANTIFIER
        case ast.BoolOp(op="or"):
            return _OR
        case ast.BoolOp():
            return _AND
        case ast.Not():
            return _NOT
        case ast.Compare() | ast.Test():
            return _COMPARE
        case ast.BinOp():
            return _BINOP_LEVEL[e.op]
        case ast.Neg():
            return _NEG
    return _POSTFIX


def format_expr(e: ast.Expr, min_level: int = _QUANTIFIER, last: bool = True) -> str:
    """``e`` as text, in parentheses if its place binds tighter than ``e`` does.

    ``last`` says nothing follows ``e`` in its place, so a quantifier's ``where`` may run to the end.
    """
    if isinstance(e, ast.Quantifier):
        bare = last and min_level <= _NOT
    else:
        bare = _level(e) >= min_level
    return _bare(e, last) if bare else f"({_bare(e, True)})"


def _bare(e: ast.Expr, last: bool) -> str:
    match e:
        case ast.StringLit() | ast.NumberLit() | ast.DurationLit():
            return e.raw
        case ast.BoolLit():
            return "true" if e.value else "false"
        case ast.NullLit():
            return "null"
        case ast.Name():
            return e.id
        case ast.ListLit():
            return f"[{', '.join(format_expr(i) for i in e.items)}]"
        case ast.Call():
            return f"{e.func}({', '.join(format_expr(a) for a in e.args)})"
        case ast.Attr():
            obj = format_expr(e.obj, _POSTFIX)
            # `6h.x` would lex as a bad number.
            return f"({obj}).{e.name}" if isinstance(e.obj, ast.DurationLit) else f"{obj}.{e.name}"
        case ast.Index():
            return f"{format_expr(e.obj, _POSTFIX)}[{format_expr(e.key)}]"
        case ast.Neg():
            operand = format_expr(e.operand, _NEG)
            return f"- {operand}" if operand.startswith("-") else f"-{operand}"
        case ast.Not():
            return "not " + format_expr(e.operand, _NOT, last)
        case ast.BinOp():
            level = _BINOP_LEVEL[e.op]
            return f"{format_expr(e.left, level)} {e.op} {format_expr(e.right, level + 1)}"
        case ast.Compare():
            return f"{format_expr(e.left, _SUM)} {e.op} {format_expr(e.right, _SUM)}"
        case ast.Test():
            return f"{format_expr(e.operand, _SUM)} {e.op}"
        case ast.BoolOp():
            return f" {e.op} ".join(_operands(e, last))
        case ast.Quantifier():
            return f"{e.kind} {e.var} in {format_expr(e.iterable, _SUM)} where {format_expr(e.cond)}"
        case ast.Count(var=None):
            return f"count({format_expr(e.iterable)})"
        case ast.Count():
            return f"count({e.var} in {format_expr(e.iterable, _SUM)}{_where(e.cond)})"
        case ast.Sum(var=None):
            return f"sum({format_expr(e.expr)})"
        case ast.Sum():
            return f"sum({format_expr(e.expr)} for {e.var} in {format_expr(e.iterable, _SUM)}{_where(e.cond)})"
    raise TypeError(f"cannot format {type(e).__name__}")


def _operands(e: ast.BoolOp, last: bool) -> list[str]:
    """Each operand's text.  A same-operator operand is kept in parentheses (it was grouped)."""
    final = len(e.operands) - 1
    return [format_expr(o, _level(e) + 1, last and i == final) for i, o in enumerate(e.operands)]


def _where(cond: ast.Expr | None) -> str:
    return "" if cond is None else f" where {format_expr(cond)}"


def _start(node: ast.Node) -> tuple[int, int]:
    return node.loc.line, node.loc.col


# ---- layout -----------------------------------------------------------------------------

@dataclass
class _Line:
    """One printed line.

    ``anchor``: the source line where its first construct starts; ``comment_indent``: the indentation
    of a comment placed just above it (one level in for a closing ``}``).
    """

    text: str
    anchor: int
    comment_indent: int
    item_start: bool = False
    # A one-line let right below another one-line let (no blank line, no comment between them in
    # the source): the two stay together, so a block of short lets reads as a block.
    joins_previous: bool = False


class _Printer:
    """Prints a module into ``_Line``s, then puts the comments between and after them."""

    def __init__(self, module: ast.Module) -> None:
        self.module = module
        self.source_lines = module.source.split("\n")
        self.comment_positions = sorted((c.line, c.col) for c in module.comments)
        self.lines: list[_Line] = []

    def render(self) -> str:
        previous_let_line = None  # source line of the previous item when it was a one-line let
        for item in self.module.items:
            first = len(self.lines)
            if isinstance(item, ast.Let):
                self._let(item)
            else:
                self._rule(item)
            self.lines[first].item_start = True
            one_line_let = isinstance(item, ast.Let) and len(self.lines) == first + 1
            if one_line_let and previous_let_line is not None and item.loc.line == previous_let_line + 1:
                self.lines[first].joins_previous = True
            previous_let_line = item.loc.line if one_line_let and item.loc.end_line == item.loc.line else None
        out = _place_comments(self.lines, self.module.comments, self.source_lines)
        return "\n".join(out) + "\n" if out else ""

    def _emit(self, indent: int, text: str, anchor: int, comment_indent: int | None = None) -> None:
        self.lines.append(_Line(" " * indent + text, anchor, indent if comment_indent is None else comment_indent))

    def _raw(self, loc: ast.Loc) -> str:
        """A string token as written: the one that ends where ``loc`` ends."""
        line = self.source_lines[loc.end_line - 1]
        return next(m.group() for m in _STRING_OR_COMMENT.finditer(line) if m.end() == loc.end_col - 1)

    def _comment_between(self, start: tuple[int, int], end: tuple[int, int]) -> bool:
        i = bisect.bisect_right(self.comment_positions, start)
        return i < len(self.comment_positions) and self.comment_positions[i] < end

    def _keeps_one_line(self, indent: int, text: str, start: tuple[int, int], last_part: ast.Node) -> bool:
        """A construct stays on one line when it fits and no comment sits before its last part."""
        return indent + len(text) <= WIDTH and not self._comment_between(start, _start(last_part))

    # -- items
    def _let(self, let: ast.Let) -> None:
        params = "" if let.params is None else f"({', '.join(let.params)})"
        head = f"let {let.name}{params} ="
        one_line = f"{head} {format_expr(let.body)}"
        parts = _parts(let.body)
        if self._keeps_one_line(0, one_line, _start(let), parts[-1][1]):
            self._emit(0, one_line, let.loc.line)
            return
        self._emit(0, head, let.loc.line)
        for text, node in parts:
            self._emit(STEP, text, node.loc.line)

    def _rule(self, rule: ast.Rule) -> None:
        options = "".join(f" priority {rule.priority}" if o == "priority" else " disabled" for o in rule.options)
        self._emit(0, f"rule {self._raw(rule.loc)}{options} {{", rule.loc.line)
        self._when(rule.trigger)
        if rule.condition is not None:
            self._condition(rule.condition)
        self._emit(STEP, "then", rule.then_loc.line)
        self._statements(rule.actions, 2 * STEP)
        self._emit(0, "}", rule.end_loc.line, comment_indent=2 * STEP)

    def _when(self, trigger: ast.Trigger) -> None:
        """``when "A", "B"`` on one line when it fits; else one event per line, aligned under the first."""
        line = self._trigger(trigger)
        if not isinstance(trigger, ast.EventTrigger) or len(trigger.events) < 2 or STEP + len(line) <= WIDTH:
            self._emit(STEP, line, trigger.loc.line)
            return
        last = len(trigger.events) - 1
        for index, event in enumerate(trigger.events):
            text = self._raw(event.loc) + ("," if index < last else "")
            if index == 0:
                self._emit(STEP, "when " + text, event.loc.line)
            else:
                self._emit(STEP + len("when "), text, event.loc.line)

    def _trigger(self, trigger: ast.Trigger) -> str:
        if isinstance(trigger, ast.EventTrigger):
            return "when " + ", ".join(self._raw(event.loc) for event in trigger.events)
        if isinstance(trigger, ast.EveryTrigger):
            return f"when every {trigger.every.raw} in folder {self._raw(trigger.loc)}"
        return f"when button {self._raw(trigger.loc)}"

    def _condition(self, condition: ast.Expr) -> None:
        one_line = f"if {format_expr(condition)}"
        parts = _parts(condition)
        if self._keeps_one_line(STEP, one_line, _start(condition), parts[-1][1]):
            self._emit(STEP, one_line, condition.loc.line)
            return
        (first, node), *rest = parts
        self._emit(STEP, f"if {first}", node.loc.line)
        for text, node in rest:
            self._emit(STEP + len("if "), text, node.loc.line)

    # -- actions
    def _statements(self, statements: tuple[ast.Statement, ...], indent: int) -> None:
        for statement in statements:
            if isinstance(statement, ast.ForBlock):
                iterable = format_expr(statement.iterable, _SUM)
                self._emit(indent, f"for {statement.var} in {iterable}{_where(statement.cond)} {{", statement.loc.line)
                self._statements(statement.body, indent + STEP)
                self._emit(indent, "}", statement.end_loc.line, comment_indent=indent + STEP)
            else:
                self._call(statement, indent)

    def _call(self, call: ast.ActionCall, indent: int) -> None:
        name = self._raw(call.loc)
        if not call.args:
            self._emit(indent, name, call.loc.line)
            return
        args = [f"{arg.name}: {format_expr(arg.value)}" for arg in call.args]
        one_line = f"{name}({', '.join(args)})"
        if self._keeps_one_line(indent, one_line, _start(call), call.args[-1]):
            self._emit(indent, one_line, call.loc.line)
            return
        column = indent + len(name) + 1
        for i, (arg, text) in enumerate(zip(call.args, args)):
            text += ")" if i == len(args) - 1 else ","
            if i == 0:
                self._emit(indent, f"{name}({text}", call.loc.line)
            else:
                self._emit(column, text, arg.loc.line)


def _parts(e: ast.Expr) -> list[tuple[str, ast.Expr]]:
    """The lines of ``e`` broken at its top-level ``and``/``or``: the first operand, then ``op operand``."""
    if not isinstance(e, ast.BoolOp):
        return [(format_expr(e), e)]
    texts = _operands(e, True)
    return [(texts[0], e.operands[0])] + [(f"{e.op} {t}", o) for t, o in zip(texts[1:], e.operands[1:])]


# ---- comments -----------------------------------------------------------------------------

def _place_comments(lines: list[_Line], comments: tuple[ast.Comment, ...], source_lines: list[str]) -> list[str]:
    """The printed text, with each comment before a line, after a line, or at the end of the file."""

    def blank(number: int) -> bool:
        return number >= 1 and not source_lines[number - 1].strip()

    anchors = list(itertools.accumulate((line.anchor for line in lines), max))
    before: list[list[ast.Comment]] = [[] for _ in range(len(lines) + 1)]  # the last: end of file
    after: list[list[ast.Comment]] = [[] for _ in lines]
    spaced: set[ast.Comment] = set()  # own-line comments with a blank line above them
    for comment in comments:
        own_line = not source_lines[comment.line - 1][: comment.col - 1].strip()
        i = bisect.bisect_right(anchors, comment.line)  # the first line that starts below the comment
        if own_line or i == 0:
            before[i].append(comment)
            if own_line and blank(comment.line - 1):
                spaced.add(comment)
        else:
            after[i - 1].append(comment)
    for i, trailing in enumerate(after):
        if len(trailing) > 1:
            before[i] = sorted(before[i] + trailing[:-1], key=lambda c: (c.line, c.col))
            after[i] = trailing[-1:]

    out: list[str] = []
    previous = None  # what the last top-level unit was: "item" or "comment"
    for i, comments_before in enumerate(before):
        line = lines[i] if i < len(lines) else None
        top_level = line is None or line.item_start
        indent = 0 if line is None else line.comment_indent
        for comment in comments_before:
            if top_level and (previous == "item" or previous == "comment" and comment in spaced):
                out.append("")
            out.append(" " * indent + comment.text.rstrip())
            previous = "comment"
        if line is None:
            break
        if line.item_start and not line.joins_previous and (
                previous == "item" or previous == "comment" and blank(line.anchor - 1)):
            out.append("")
        out.append(line.text + "".join("  " + c.text.rstrip() for c in after[i]))
        previous = "item"
    return out
