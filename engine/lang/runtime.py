"""What compiled rule conditions can reach at run time: the null-safe, total helpers.

This module is the sandbox boundary: generated rule code is executed with a namespace built
only from ``RUNTIME_NAMESPACE`` below, never with builtins or module globals.
"""

from __future__ import annotations

import datetime as _dt
import decimal
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
        try:
            return base.get(key)
        except TypeError:  # an unhashable key (a list or a map) is in no map
            return None
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
    try:
        return a is not None and b is not None and not _mixed_bool(a, b) and a == b
    except ArithmeticError:  # a signalling NaN refuses even ==
        return False


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None or _mixed_bool(a, b):
            return False
        try:
            return op(a, b)
        except (TypeError, ArithmeticError):  # unlike kinds; a Decimal NaN
            return False

    return compare


rt_lt = _order(lambda a, b: a < b)
rt_le = _order(lambda a, b: a <= b)
rt_gt = _order(lambda a, b: a > b)
rt_ge = _order(lambda a, b: a >= b)


def rt_ne(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and (_mixed_bool(a, b) or a != b)
    except ArithmeticError:
        return False


def _member(a: Any, collection: Any) -> bool:
    try:
        return any(item is not None and not _mixed_bool(a, item) and item == a for item in collection)
    except (TypeError, ArithmeticError):
        return False


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


def rt_matches(pattern: Any, a: Any) -> bool:
    """``pattern`` is a ``patterns.LinearPattern`` compiled at check time: linear in ``a``."""
    if a.__class__ is not str:
        return False
    try:
        return pattern.search(a)
    except (AttributeError, TypeError, ValueError):  # not a pattern
        return False


def rt_is_empty(a: Any) -> bool:
    return a.__class__ in (str, list, dict, tuple) and len(a) == 0


def rt_is_not_empty(a: Any) -> bool:
    return a.__class__ in (str, list, dict, tuple) and len(a) > 0


def _num(value: Any) -> Any:
    if value.__class__ is float:
        return decimal.Decimal(str(value))
    return value


# What each operator takes.  Anything else (a string times a number, "%s" % x, a list plus a list,
# mixed kinds only known at run time) gives null: never a huge string, never a formatting surprise.
_NUMBER_KINDS = frozenset({int, decimal.Decimal, float})
_MAX_INT_BITS = 1 << 16  # a product of ints past ~20,000 digits is null (never a gigantic int)


def _arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None or a.__class__ is bool or b.__class__ is bool:
            return None
        try:
            return op(_num(a), _num(b))
        except (TypeError, ArithmeticError, ValueError, MemoryError):
            return None

    return apply


def _numbers(a: Any, b: Any) -> bool:
    return a.__class__ in _NUMBER_KINDS and b.__class__ in _NUMBER_KINDS


def _add(a: Any, b: Any) -> Any:
    if _numbers(a, b) or (a.__class__ is str and b.__class__ is str):
        return a + b
    if isinstance(a, (_dt.datetime, _dt.timedelta)) and isinstance(b, (_dt.datetime, _dt.timedelta)):
        return a + b  # datetime + datetime is a TypeError: null
    return None


def _sub(a: Any, b: Any) -> Any:
    if _numbers(a, b) or (isinstance(a, (_dt.datetime, _dt.timedelta)) and isinstance(b, (_dt.datetime, _dt.timedelta))):
        return a - b
    return None


def _mul(a: Any, b: Any) -> Any:
    if _numbers(a, b):
        product = a * b
        return None if product.__class__ is int and product.bit_length() > _MAX_INT_BITS else product
    if a.__class__ is _dt.timedelta and b.__class__ is int:
        return a * b
    if b.__class__ is _dt.timedelta and a.__class__ is int:
        return b * a
    return None


def _div(a: Any, b: Any) -> Any:
    if _numbers(a, b):
        return decimal.Decimal(a) / decimal.Decimal(b)
    if a.__class__ is _dt.timedelta and b.__class__ in _NUMBER_KINDS:
        return a / b
    return None


def _mod(a: Any, b: Any) -> Any:
    return a % b if _numbers(a, b) else None


rt_add = _arith(_add)
rt_sub = _arith(_sub)
rt_mul = _arith(_mul)
rt_div = _arith(_div)
rt_mod = _arith(_mod)


def rt_neg(a: Any) -> Any:
    if a.__class__ in _NUMBER_KINDS or a.__class__ is _dt.timedelta:
        try:
            return -_num(a)
        except ArithmeticError:  # a signalling NaN
            return None
    return None


def rt_sum(values: Any) -> Any:
    """The total of the numbers among ``values``: other values are skipped; null if it overflows."""
    total: Any = 0
    try:
        for value in values:
            if value.__class__ in _NUMBER_KINDS:
                total = total + _num(value)
    except TypeError:  # not a list (compiled rules always pass one)
        return 0
    except ArithmeticError:
        return None
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
    if a.__class__ is not str or len(a) > 64:  # no date is written longer
        return None
    return parse_datetime(a)


_MAX_ROUND_DIGITS = 10_000


def rt_round(a: Any, digits: Any = 0) -> Any:
    """``a`` rounded half up to ``digits`` decimals (negative: tens, hundreds, ...).  A number that
    already has no more decimals than asked is itself; a result past the decimal precision
    (28 digits) is null, as are ``digits`` beyond +-10,000 (never a gigantic int)."""
    if not _is_number(a) or not _is_number(digits):
        return None
    try:
        if not -_MAX_ROUND_DIGITS <= digits <= _MAX_ROUND_DIGITS:
            return None
        places = int(digits)
        exact = decimal.Decimal(a)
        try:
            return exact.quantize(decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP)
        except decimal.InvalidOperation:  # more digits than the precision holds
            return exact if exact.is_finite() and exact.as_tuple().exponent >= -places else None
    except (ArithmeticError, ValueError, TypeError):
        return None


# The whole namespace generated code runs in (no builtins beyond these).
RUNTIME_NAMESPACE: dict[str, Any] = {
    name: value for name, value in globals().items() if name.startswith("rt_")
}
RUNTIME_NAMESPACE.update({"any": any, "all": all, "sum": sum, "len": len, "__builtins__": {}})
