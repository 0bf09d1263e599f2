"""to_json_text: orjson writing runtime values exactly as dump_value dumps them (its Decimal and
datetime fast paths and caches included), and its refusals (the caller falls back on to_json)."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruledesk.engine.model.order import (_DUMPED_DATETIMES, _DUMPED_DECIMALS, _dump_decimal, _dump_decimal_text,
                                         _orjson_default, dump_value, format_datetime, to_json, to_json_text)

UTC = _dt.timezone.utc

decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(lambda digits, exp, neg: Decimal(f"{'-' if neg else ''}{digits}E{exp}"),
              st.integers(0, 10 ** 20), st.integers(-30, 30), st.booleans()),
    st.sampled_from([Decimal(t) for t in ("0", "-0", "0.00", "12.50", "3.000", "0E-2000", "1E+1001", "0.1",
                                          "0.10000000000000000001", "123456789012345.6", "1234567890123456.7",
                                          "-0.000001", "0.0000001", "99999999999999999")]),
)


@settings(max_examples=800, deadline=None)
@given(decimals)
def test_a_decimal_is_dumped_as_dump_decimal_dumps_it(number: Decimal) -> None:
    expected = _dump_decimal(number)
    for got in (_dump_decimal_text(number, str(number)), _orjson_default(number), _orjson_default(number)):
        assert type(got) is type(expected) and repr(got) == repr(expected)


def test_equal_decimals_written_differently_are_not_confused_by_the_cache() -> None:
    _DUMPED_DECIMALS.clear()
    assert [_orjson_default(Decimal(t)) for t in ("0", "0E-2000", "0.10000000000000000001",
                                                   "0.100000000000000000010", "12.5", "12.50")] == [
        0, "0E-2000", "0.10000000000000000001", "0.100000000000000000010", 12.5, 12.5]


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.one_of(st.none(), st.just(UTC),
                                        st.builds(lambda h: _dt.timezone(_dt.timedelta(hours=h)), st.integers(-12, 12)))))
def test_a_datetime_is_formatted_as_format_datetime_formats_it(moment: _dt.datetime) -> None:
    try:
        expected = format_datetime(moment)
    except (OverflowError, ValueError):
        return  # before the first or after the last representable UTC moment: not an order's date
    _DUMPED_DATETIMES.clear()
    assert _orjson_default(moment) == expected and _orjson_default(moment) == expected


def test_the_text_means_what_to_json_writes() -> None:
    value = {"n": [Decimal("12.50"), Decimal("1E-7"), Decimal("3"), 1e-7, 2 ** 60, None, True],
             "at": _dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC), "t": ("é", "\u2028", "\x00"), "m": {}}
    text = to_json_text(value)
    assert json.loads(text) == json.loads(to_json(value)) == dump_value(value) | {"t": ["é", "\u2028", "\x00"]}
    assert "\n" not in text


@dataclass
class _Point:
    x: int


@pytest.mark.parametrize("value", [2 ** 64, Decimal(2 ** 70), "\ud800", {1: "x"}, {"d": _dt.date(2026, 1, 1)}, object(),
                                   _Point(1)])
def test_what_orjson_refuses_raises_a_type_error(value) -> None:
    with pytest.raises(TypeError):
        to_json_text({"v": value})
    assert issubclass(orjson.JSONEncodeError, TypeError)  # what Decision.to_json_text catches
