"""The run-time helpers compiled rules call: one list of built-ins, and every helper is total."""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import re
import time
from decimal import Decimal

import pytest

from ruledesk.engine import Engine
from ruledesk.engine.lang import runtime
from ruledesk.grammar import ast


def test_every_builtin_function_but_now_has_its_runtime_helper():
    missing = [name for name in ast.BUILTIN_FUNCTIONS if name != "now" and f"rt_{name}" not in runtime.RUNTIME_NAMESPACE]
    assert missing == []


UTC = dt.timezone.utc
HOSTILE = [
    None, True, False, 0, -1, 7, 10 ** 5000, -(10 ** 5000), 1.5, float("nan"), float("inf"),
    Decimal("1e999999"), Decimal("-1e999999"), Decimal("1e-999999"), Decimal("1e999999999"), Decimal("NaN"),
    Decimal("sNaN"), Decimal("Infinity"), Decimal("12.50"),
    "", "ab", "NaN", "1e999999", "Infinity", "\ud800", "x" * 10_000, "2026-13-45", "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00", "\x00",
    [], [None, 1, "a"], [[[[]]]], [Decimal("NaN")], {}, {"a": {"b": []}}, {"k": [1]}, (), frozenset({1}), {1},
    dt.datetime.min, dt.datetime.max.replace(tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC), dt.timedelta.max,
    dt.timedelta.min, dt.timedelta(0), re.compile("a+"), object(),
]
HELPERS = sorted((name, fn) for name, fn in runtime.RUNTIME_NAMESPACE.items() if name.startswith("rt_"))


def _arities(fn) -> list[int]:
    params = inspect.signature(fn).parameters.values()
    required = sum(p.default is inspect.Parameter.empty for p in params)
    return list(range(required, len(params) + 1))


@pytest.mark.parametrize("name, fn", HELPERS, ids=[name for name, _ in HELPERS])
def test_every_runtime_helper_is_total_over_hostile_values(name, fn):
    started = time.perf_counter()
    for arity in _arities(fn):
        for args in itertools.product(HOSTILE, repeat=arity):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - the point: nothing may escape
                pytest.fail(f"{name}{tuple(map(_short, args))} raised {type(exc).__name__}: {exc}")
    assert time.perf_counter() - started < 5, f"{name} is slow on hostile values"


def _short(value) -> str:
    text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) and value.bit_length() > 64 else repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def test_the_helper_list_is_the_runtime_namespace():
    assert len(HELPERS) > 25 and {"rt_round", "rt_date", "rt_mul", "rt_mod", "rt_sum", "rt_matches"} <= dict(HELPERS).keys()


@pytest.mark.parametrize("call, want", [
    (lambda: runtime.rt_round(Decimal("2.345"), 1000), Decimal("2.345")),
    (lambda: runtime.rt_round(Decimal("2.345"), -1000), 0),
    (lambda: runtime.rt_round(Decimal("2.345"), 2), Decimal("2.35")),
    (lambda: runtime.rt_round(Decimal("1250"), -2), Decimal("1.3E+3")),
    (lambda: runtime.rt_round(Decimal("1e999999"), 2), Decimal("1e999999")),
    (lambda: runtime.rt_round(1, Decimal("1e999999999")), None),
    (lambda: runtime.rt_div(Decimal("1e999999"), Decimal("1e-999999")), None),
    (lambda: runtime.rt_div(10 ** 5000, 10 ** 5000), 1),
    (lambda: runtime.rt_date("2026-13-45"), None),
    (lambda: runtime.rt_date("0001-01-01T00:00:00+05:00"), None),
    (lambda: runtime.rt_get({"a": 1}, ["a"]), None),
    (lambda: runtime.rt_sum([Decimal("9e999999"), Decimal("9e999999")]), None),
    (lambda: runtime.rt_sum([1, "2", None, True, Decimal("0.5")]), Decimal("1.5")),
])
def test_hostile_arithmetic_gives_null_or_the_exact_value(call, want):
    assert call() == want


@pytest.mark.parametrize("a, op, b", [
    ("ab", runtime.rt_mul, 10 ** 9), (10 ** 9, runtime.rt_mul, "ab"), (["a"], runtime.rt_mul, 10 ** 9),
    ("%s and %s", runtime.rt_mod, ("x", "y")), ("%s", runtime.rt_mod, 1), ("ab", runtime.rt_add, 1),
    ([1], runtime.rt_add, [2]), ("ab", runtime.rt_sub, "a"), ("ab", runtime.rt_div, 2),
    (10 ** 10000, runtime.rt_mul, 10 ** 10000),
], ids=["str*n", "n*str", "list*n", "format-tuple", "format", "str+n", "list+list", "str-str", "str/n", "huge-int-product"])
def test_strings_and_lists_never_repeat_or_format_through_arithmetic(a, op, b):
    assert op(a, b) is None


def test_numbers_stay_numbers():
    assert runtime.rt_mul(6, 7) == 42 and runtime.rt_mod(Decimal("7.5"), 2) == Decimal("1.5")
    assert runtime.rt_add("ab", "cd") == "abcd" and runtime.rt_mul(dt.timedelta(hours=1), 2) == dt.timedelta(hours=2)
    assert runtime.rt_div(dt.timedelta(hours=1), 2) == dt.timedelta(minutes=30)
    assert runtime.rt_sub(dt.datetime(2026, 1, 2, tzinfo=UTC), dt.timedelta(days=1)) == dt.datetime(2026, 1, 1, tzinfo=UTC)


def test_repetition_and_modulo_on_values_typed_at_run_time_give_null_in_rules():
    engine = Engine.from_source('''
rule "repeat" { when "Order is Imported" if ("ab" * order.order_metadata.n) is not set then "Tag Order"(name: "r") }
rule "format" { when "Order is Imported" if (order.order_metadata.f % order.order_metadata.n) is not set
                then "Tag Order"(name: "f") }
rule "numbers" { when "Order is Imported" if order.order_metadata.n % 7 == 6 and order.order_metadata.n * 2 == 2000000000
                 then "Tag Order"(name: "n") }
''')
    order = {"order_metadata": {"n": 1_000_000_000, "f": "%s%s"}}
    started = time.perf_counter()
    fired = engine.match({"event": "Order is Imported", "order": order})
    assert fired == ["repeat", "format", "numbers"]
    assert time.perf_counter() - started < 1
