"""What compiled rule conditions can reach at run time: the null-safe, total helpers.

This module is the sandbox boundary: generated rule code is executed with a namespace built
only from ``RUNTIME_NAMESPACE`` below, never with builtins or module globals.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from collections.abc import Callable
from typing import Any

from ruledesk.engine.model.order import parse_datetime

UTC = _dt.timezone.utc


# ---- helpers generated rule code calls --------------------------------------------------
# Each one is total: a missing value or a value of the wrong kind gives null/false, never an
# exception (LANGUAGE.md section 4: "missing values never raise at run time").

_NUMBERS = (int, decimal.Decimal)


def _is_number(value: Any) -> bool:
    return value.__class__ in _NUMBERS or (isinstance(value, _NUMBERS) and not isinstance(value, bool))


def rt_get(base: Any, key: Any) -> Any:
    if base.__class__ is dict:
        return base.get(key)
    if base.__class__ is list and key.__class__ is int:
        return base[key] if -len(base) <= key < len(base) else None
    return None


def rt_iter(value: Any) -> Any:
    return value if value.__class__ in (list, tuple) else ()


def rt_truthy(value: Any) -> bool:
    return value is True or (value is not None and value is not False and bool(value))


def _mixed_bool(a: Any, b: Any) -> bool:
    """A boolean against a non-boolean: never equal, never ordered (Python would say True == 1)."""
    return (a.__class__ is bool) != (b.__class__ is bool)


def rt_eq(a: Any, b: Any) -> bool:
    return a is not None and b is not None and not _mixed_bool(a, b) and a == b


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None or _mixed_bool(a, b):
            return False
        try:
            return op(a, b)
        except TypeError:
            return False

    return compare


rt_lt = _order(lambda a, b: a < b)
rt_le = _order(lambda a, b: a <= b)
rt_gt = _order(lambda a, b: a > b)
rt_ge = _order(lambda a, b: a >= b)


def rt_ne(a: Any, b: Any) -> bool:
    return a is not None and b is not None and (_mixed_bool(a, b) or a != b)


def _member(a: Any, collection: Any) -> bool:
    return any(item is not None and not _mixed_bool(a, item) and item == a for item in collection)


def rt_in(a: Any, collection: Any) -> bool:
    if a is None or collection.__class__ not in (list, tuple, frozenset, set):
        return False
    return _member(a, collection)


def rt_not_in(a: Any, collection: Any) -> bool:
    if a is None or collection.__class__ not in (list, tuple, frozenset, set):
        return False
    return not _member(a, collection)


def rt_contains(a: Any, b: Any) -> bool:
    if a.__class__ is str:
        return b.__class__ is str and b in a
    if a.__class__ is list:
        return b is not None and _member(b, a)
    return False


def rt_starts(a: Any, b: Any) -> bool:
    return a.__class__ is str and b.__class__ is str and a.startswith(b)


def rt_ends(a: Any, b: Any) -> bool:
    return a.__class__ is str and b.__class__ is str and a.endswith(b)


def rt_matches(pattern: re.Pattern[str], a: Any) -> bool:
    return a.__class__ is str and pattern.search(a) is not None


def rt_is_empty(a: Any) -> bool:
    return a.__class__ in (str, list, dict, tuple) and len(a) == 0


def rt_is_not_empty(a: Any) -> bool:
    return a.__class__ in (str, list, dict, tuple) and len(a) > 0


def _num(value: Any) -> Any:
    if value.__class__ is float:
        return decimal.Decimal(str(value))
    return value


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None or a.__class__ is bool or b.__class__ is bool:
            return None
        try:
            return op(_num(a), _num(b))
        except (TypeError, ArithmeticError, ValueError):
            return None

    return apply


def _add(a: Any, b: Any) -> Any:
    if (a.__class__ is str) != (b.__class__ is str):
        raise TypeError("+ joins two strings or adds two numbers")
    return a + b


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, _dt.timedelta):
        return a / b
    return decimal.Decimal(a) / decimal.Decimal(b)


rt_add = _arith(_add)
rt_sub = _arith(lambda a, b: a - b)
rt_mul = _arith(lambda a, b: a * b)
rt_div = _arith(_div)
rt_mod = _arith(lambda a, b: a % b)


def rt_neg(a: Any) -> Any:
    try:
        return -a if a is not None and a.__class__ not in (str, bool) else None
    except TypeError:
        return None


def rt_sum(values: Any) -> Any:
    total: Any = 0
    for value in values:
        if value is not None and value.__class__ is not str and value.__class__ is not bool:
            try:
                total = total + _num(value)
            except TypeError:
                continue
    return total


def rt_count(values: Any) -> int:
    return len(values) if values.__class__ in (list, tuple, dict, str) else 0


def rt_lower(a: Any) -> Any:
    return a.lower() if a.__class__ is str else None


def rt_upper(a: Any) -> Any:
    return a.upper() if a.__class__ is str else None


def rt_len(a: Any) -> Any:
    return len(a) if a.__class__ in (list, tuple, dict, str) else None


def rt_date(a: Any) -> Any:
    if isinstance(a, _dt.datetime):
        return a
    if a.__class__ is not str:
        return None
    return parse_datetime(a)


def rt_round(a: Any, digits: Any = 0) -> Any:
    if not _is_number(a) or not _is_number(digits):
        return None
    quantum = decimal.Decimal(1).scaleb(-int(digits))
    return decimal.Decimal(a).quantize(quantum, rounding=decimal.ROUND_HALF_UP)


# The whole namespace generated code runs in (no builtins beyond these).
RUNTIME_NAMESPACE: dict[str, Any] = {
    name: value for name, value in globals().items() if name.startswith("rt_")
}
RUNTIME_NAMESPACE.update({"any": any, "all": all, "sum": sum, "len": len, "__builtins__": {}})
