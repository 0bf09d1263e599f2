"""The rule language's syntax tree: frozen dataclasses, each with a source location.

Locations are excluded from equality, so ``a == b`` compares what two trees *mean*: the
formatter uses it to prove that its output parses back to the same rules.
"""

from __future__ import annotations

import functools

import decimal
import re
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True, slots=True)
class Loc:
    """A place in a rule file; lines and columns count from 1, ``end_*`` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Loc("<none>", 0, 0)


def _loc() -> Loc:
    return field(default=NOWHERE, compare=False, repr=False)  # type: ignore[return-value]


class Node:
    __slots__ = ()
    loc: Loc


class Expr(Node):
    __slots__ = ()


# ---- expressions ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StringLit(Expr):
    value: str
    raw: str = field(default="", compare=False)
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class NumberLit(Expr):
    value: int | decimal.Decimal
    raw: str = field(default="", compare=False)
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class DurationLit(Expr):
    seconds: int
    raw: str = field(default="", compare=False)
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class BoolLit(Expr):
    value: bool
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class NullLit(Expr):
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class ListLit(Expr):
    items: tuple[Expr, ...]
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Name(Expr):
    """``order``, ``event``, ``store``, ``item``, a binder, or a ``let`` value."""

    id: str
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Attr(Expr):
    obj: Expr
    name: str
    loc: Loc = _loc()
    name_loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Index(Expr):
    obj: Expr
    key: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Call(Expr):
    """A built-in function (``BUILTIN_FUNCTIONS``) or a ``let`` predicate."""

    func: str
    args: tuple[Expr, ...]
    loc: Loc = _loc()


# The built-in functions and how many arguments each takes (min, max): the one list the checker,
# the compiler and the explanations read.  Each but now() is the run-time helper rt_<name>.
BUILTIN_FUNCTIONS: dict[str, tuple[int, int]] = {
    "lower": (1, 1), "upper": (1, 1), "len": (1, 1), "now": (0, 0), "date": (1, 1), "round": (1, 2),
}


@dataclass(frozen=True, slots=True)
class Not(Expr):
    operand: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Neg(Expr):
    operand: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class BinOp(Expr):
    """Arithmetic: ``+ - * / %``."""

    op: str
    left: Expr
    right: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class BoolOp(Expr):
    """``and`` / ``or`` over two or more operands (flattened)."""

    op: str
    operands: tuple[Expr, ...]
    loc: Loc = _loc()
    # Written in parentheses inside an operator of the same kind (`a and (b and c)`): kept nested.
    grouped: bool = field(default=False, compare=False, repr=False)


COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "starts with", "ends with", "matches")
TEST_OPS = ("is set", "is not set", "is empty", "is not empty")


@dataclass(frozen=True, slots=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Test(Expr):
    """``x is set``, ``x is not empty``, ..."""

    op: str
    operand: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Quantifier(Expr):
    """``any X in LIST where COND`` / ``all X in LIST where COND``."""

    kind: str
    var: str
    iterable: Expr
    cond: Expr
    loc: Loc = _loc()
    var_loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Count(Expr):
    """``count(X in LIST [where COND])``, or ``count(LIST)`` when ``var`` is None."""

    var: str | None
    iterable: Expr
    cond: Expr | None
    loc: Loc = _loc()
    var_loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Sum(Expr):
    """``sum(EXPR for X in LIST [where COND])``, or ``sum(LIST)`` when ``var`` is None."""

    expr: Expr
    var: str | None
    iterable: Expr | None
    cond: Expr | None
    loc: Loc = _loc()
    var_loc: Loc = _loc()


# ---- statements -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Arg(Node):
    name: str
    value: Expr
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class ActionCall(Node):
    name: str
    args: tuple[Arg, ...]
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class ForBlock(Node):
    var: str
    iterable: Expr
    cond: Expr | None
    body: tuple["Statement", ...]
    loc: Loc = _loc()
    end_loc: Loc = _loc()
    var_loc: Loc = _loc()


Statement = ActionCall | ForBlock


# ---- triggers, rules, modules -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EventRef(Node):
    name: str
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class EventTrigger(Node):
    events: tuple[EventRef, ...]
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class EveryTrigger(Node):
    """``when every DURATION in folder "Folder"`` (Order Desk's Custom Event)."""

    every: DurationLit
    folder: str
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class ButtonTrigger(Node):
    """``when button "Label"`` (Order Desk's Custom Button)."""

    label: str
    loc: Loc = _loc()


Trigger = EventTrigger | EveryTrigger | ButtonTrigger


@dataclass(frozen=True, slots=True)
class Rule(Node):
    name: str
    priority: int
    disabled: bool
    trigger: Trigger
    condition: Expr | None
    actions: tuple[Statement, ...]
    # Option order as written ("priority", "disabled"), so the formatter keeps it.
    options: tuple[str, ...] = field(default=(), compare=False)
    loc: Loc = _loc()
    end_loc: Loc = _loc()
    then_loc: Loc = _loc()


@dataclass(frozen=True, slots=True)
class Let(Node):
    name: str
    params: tuple[str, ...] | None  # None for a value, a tuple (maybe empty) for a function
    body: Expr
    loc: Loc = _loc()
    param_locs: tuple[Loc, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Comment:
    line: int
    col: int
    text: str


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed rule file."""

    path: str
    items: tuple[Let | Rule, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
    source: str = field(default="", compare=False, repr=False)


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def child_fields(cls: type) -> tuple[str, ...]:
    """The fields of a node class that hold child nodes (not locations or raw text)."""
    fields = _CHILD_FIELDS.get(cls)
    if fields is None:
        fields = _CHILD_FIELDS[cls] = tuple(f for f in cls.__dataclass_fields__
                                            if not f.endswith("loc") and f not in ("raw", "comments", "source"))
    return fields


def walk(node: object):
    """Every node below ``node`` (itself included), depth-first, in source order."""
    stack = [node]
    pop, push, extend = stack.pop, stack.append, stack.extend
    kinds = (Node, Module)
    while stack:
        current = pop()
        cls = current.__class__
        if cls is tuple or cls is list:
            extend(reversed(current))
            continue
        if not isinstance(current, kinds):
            continue
        yield current
        fields = _CHILD_FIELDS.get(cls) or child_fields(cls)
        for name in reversed(fields):
            value = getattr(current, name)
            if isinstance(value, (Node, tuple, list)):
                push(value)


@functools.lru_cache(maxsize=64)
def _lines(text: str) -> list[str]:
    """The lines of a rule file's text (kept: explanations quote clauses of the same files again and again)."""
    return text.splitlines()


def source_text(node: Node, sources: dict[str, str]) -> str:
    """The text of ``node`` as written in its rule file (whitespace runs folded)."""
    loc = node.loc
    text = sources.get(loc.file)
    if text is None or not loc.line:
        return type(node).__name__
    lines = _lines(text)
    if loc.end_line == loc.line:
        snippet = lines[loc.line - 1][loc.col - 1:loc.end_col - 1]
    else:
        chunk = [lines[loc.line - 1][loc.col - 1:]] + lines[loc.line:loc.end_line - 1]
        chunk.append(lines[loc.end_line - 1][:loc.end_col - 1])
        snippet = " ".join(part.strip() for part in chunk)
    return re.sub(r"\s+", " ", snippet).strip()
