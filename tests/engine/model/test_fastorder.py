"""The fast order validation against the reference (pydantic) path: equal results -- equal key order,
equal types, equal Decimal exponents -- or equal ``OrderError`` messages; from a dict and from JSON
text; and ``load_json`` against ``json.loads(text, parse_float=Decimal)``."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator

from ruledesk.engine.model.fastorder import _kind, order_parser
from ruledesk.engine.model.order import (
    COERCIONS,
    MAX_DEPTH,
    Address,
    Note,
    Order,
    OrderError,
    OrderItem,
    Shipment,
    _FAST,
    load_json,
    parse_order,
    parse_order_json,
    pydantic_parse_order,
)

ROOT = Path(__file__).resolve().parents[3]
PROPERTY = settings(max_examples=400, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- exact comparison ----------------------------------------------------------------------------------------


def same(a: Any, b: Any, path: str = "order") -> None:
    """``a`` and ``b`` are the same runtime value: same types, same key order, same Decimal digits and exponent."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for index, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{index}]")
    elif isinstance(a, Decimal):
        assert a.as_tuple() == b.as_tuple(), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, float):  # only in inputs (nan != nan)
        assert repr(a) == repr(b), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dt.datetime):
        assert (a, a.tzinfo, repr(a)) == (b, b.tzinfo, repr(b)), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def outcome(parse, raw: Any) -> Any:
    try:
        return parse(raw)
    except OrderError as exc:
        return ("OrderError", str(exc))


def same_outcome(fast: Any, reference: Any) -> None:
    if isinstance(reference, tuple) or isinstance(fast, tuple):
        assert fast == reference
    else:
        same(fast, reference)


def check(raw: Any) -> None:
    """``parse_order(raw)`` is what the reference gives, and leaves ``raw`` as it was."""
    before = copy.deepcopy(raw)
    fast = outcome(parse_order, raw)
    same(raw, before, "input")
    same_outcome(fast, outcome(pydantic_parse_order, copy.deepcopy(raw)))


# ---- random orders -------------------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc00b"])
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "é", "😀", "0000-00-00 00:00:00", "New"]),
                 SURROGATES)
NUMERIC_TEXT = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    st.sampled_from(["12.50", "0.00", "-0", "1e3", "1E+2", "1.5", " 7 ", "1_000", "0012", "2", "999999999999999999",
                     "1000000000000000000", "1e999999999", "1e-999999999", "1e1000", "1e-1000", "0e99999", "NaN",
                     "-Infinity", "sNaN", "", "   ", "abc", "１２", "1" * 101, "1" * 100, "0." + "0" * 99 + "1",
                     "12.5.1", "+3", "\t4\n"]))
NUMBERS = st.one_of(st.integers(), st.sampled_from([10 ** 18, -(10 ** 18) + 1, 10 ** 999, 10 ** 1001, 2 ** 63,
                                                    2 ** 63 - 1, -(2 ** 63)]),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.decimals(allow_nan=True, allow_infinity=True), st.booleans())
DATES = st.one_of(st.sampled_from(["2026-11-21 14:03:11", "2024-05-01T15:45:00+02:00", "2024-05-02T08:00:00Z",
                                   "2026-11-21", "0000-00-00 00:00:00", "", " ", "yesterday", "2026-13-01 00:00:00",
                                   "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                                   "2026-11-21 14:03:11.123456"]),
                  st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(str),
                  st.datetimes().map(lambda d: d.isoformat()))
WEIRD = st.one_of(st.booleans(), st.just([]), st.just([1]), st.just({}), st.just({"a": 1}), st.just((1,)),
                  st.just(dt.datetime(2026, 1, 1)), st.just(b"x"), st.just(set()))
KEYS = st.one_of(st.text(max_size=8), st.sampled_from(["model_config", "model_fields", "__class__", "_private",
                                                       "id", "price", "\ud800", "é", "__pydantic_extra__"]))


def nested(depth: int) -> Any:
    value: Any = {"leaf": 1.5}
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.decimals(), TEXT,
                      st.sampled_from([10 ** 1001, Decimal("1e999999"), 1e308, -0.0, 0.1]))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
FREE = st.one_of(JSON, st.sampled_from([MAX_DEPTH - 4, MAX_DEPTH - 3, MAX_DEPTH - 2, MAX_DEPTH]).map(nested))

VALUES = {
    "text": st.one_of(st.none(), TEXT, TEXT, NUMBERS, WEIRD),
    "money": st.one_of(st.none(), NUMERIC_TEXT, NUMERIC_TEXT, NUMBERS, WEIRD),
    "count": st.one_of(st.none(), NUMERIC_TEXT, NUMERIC_TEXT, NUMBERS, WEIRD),
    "time": st.one_of(st.none(), DATES, DATES, NUMBERS, WEIRD, st.datetimes(timezones=st.timezones()),
                      st.datetimes(timezones=st.just(dt.timezone.utc)), st.datetimes()),
    "folder": st.one_of(st.none(), st.just(""), TEXT, NUMBERS, WEIRD),
    "map": st.one_of(st.none(), st.just([]), st.dictionaries(KEYS, FREE, max_size=4), FREE, WEIRD),
    "text_map": st.one_of(st.none(), st.just([]), st.dictionaries(KEYS, st.one_of(TEXT, TEXT, NUMBERS), max_size=3),
                          WEIRD),
    "map_list": st.one_of(st.none(), st.just([]), st.lists(st.dictionaries(KEYS, FREE, max_size=3), max_size=3),
                          st.lists(FREE, max_size=2), WEIRD),
}


# Order Desk's own shape, as JSON text gives it (what the typed path takes): strings everywhere, some
# hostile ("", " 7 ", "1e999999999", "NaN", 101 digits, lone surrogates), [] for empty maps, few extras.
STRINGS = st.one_of(st.none(), st.text(max_size=8), st.text(max_size=8), TEXT, NUMERIC_TEXT, NUMERIC_TEXT, DATES)
TYPED_VALUES = {
    "text": STRINGS, "money": STRINGS, "time": STRINGS, "folder": STRINGS,
    "count": st.one_of(STRINGS, st.integers(), st.sampled_from([10 ** 18, 2 ** 64, 10 ** 30])),
    "map": st.one_of(st.none(), st.just([]), st.just([1]), st.dictionaries(st.text(max_size=5), FREE, max_size=3)),
    "text_map": st.one_of(st.none(), st.just([]), st.just(["a"]), st.dictionaries(st.text(max_size=5), TEXT,
                                                                                  max_size=3),
                          st.dictionaries(st.text(max_size=3), JSON_LEAF, max_size=2)),
    "map_list": st.one_of(st.none(), st.just([]), st.lists(st.dictionaries(st.text(max_size=4), FREE, max_size=2),
                                                           max_size=2), st.just([1])),
}


def record(model, depth: int = 0, values: dict[str, Any] = VALUES,
           extras: st.SearchStrategy[dict[str, Any]] = st.dictionaries(KEYS, FREE, max_size=3),
           ) -> st.SearchStrategy[dict[str, Any]]:
    """A random dict for ``model``: some declared fields (valid or hostile values), some extras."""
    fields = {}
    for name, info in model.model_fields.items():
        kind, arg = _kind(model, name, info, COERCIONS)
        if kind == "model":
            fields[name] = st.one_of(st.none(), st.just([]), record(arg, depth + 1, values, extras), values["text"])
        elif kind == "models":
            fields[name] = st.one_of(st.none(), st.just([]), st.lists(record(arg, depth + 1, values, extras),
                                                                      max_size=3),
                                     st.lists(values["text"], max_size=2), values["text"])
        else:
            fields[name] = values[kind]
    declared = st.fixed_dictionaries({}, optional=fields)

    @st.composite
    def build(draw):
        order = draw(declared)
        keys = list(order)
        draw(st.randoms()).shuffle(keys)
        shuffled = {key: order[key] for key in keys}
        for key, value in draw(extras).items():
            shuffled.setdefault(key, value)
        return shuffled

    return build()


# Mostly well-formed orders (the fast path's shapes) with a hostile value here and there.
GOOD_TEXT = st.one_of(st.none(), st.text(max_size=10), st.integers(-1000, 10 ** 6))
GOOD_MONEY = st.one_of(st.none(), st.just(""), st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
                       st.integers(0, 10 ** 6), st.floats(0, 1e6), st.decimals(allow_nan=False, places=3))
GOOD_COUNT = st.one_of(st.none(), st.integers(0, 10 ** 6).map(str), st.integers(-5, 10 ** 6), st.just("1.0"))
GOOD_DATE = st.one_of(st.none(), st.sampled_from(["2026-11-21 14:03:11", "2024-05-01T15:45:00+02:00", "",
                                                  "0000-00-00 00:00:00"]),
                      st.datetimes(timezones=st.just(dt.timezone.utc)))


@st.composite
def likely_order(draw) -> dict[str, Any]:
    def item() -> dict[str, Any]:
        return {"id": draw(GOOD_TEXT), "name": draw(GOOD_TEXT), "price": draw(GOOD_MONEY),
                "quantity": draw(GOOD_COUNT), "weight": draw(GOOD_MONEY), "code": draw(GOOD_TEXT),
                "variation_list": draw(st.one_of(st.just([]), st.dictionaries(st.text(max_size=4),
                                                                              st.text(max_size=4), max_size=2))),
                "metadata": draw(st.one_of(st.just([]), st.dictionaries(KEYS, JSON, max_size=2))),
                "date_added": draw(GOOD_DATE), "date_updated": draw(GOOD_DATE)}

    address = {name: draw(GOOD_TEXT) for name in Address.model_fields if draw(st.booleans())}
    order = {"id": draw(GOOD_TEXT), "email": draw(GOOD_TEXT), "order_total": draw(GOOD_MONEY),
             "email_count": draw(GOOD_COUNT), "folder": draw(st.one_of(st.none(), st.just(""), st.text(max_size=5))),
             "date_added": draw(GOOD_DATE), "shipping": address, "customer": draw(st.one_of(st.just([]), st.none())),
             "checkout_data": draw(st.one_of(st.just([]), st.dictionaries(KEYS, JSON, max_size=2))),
             "discount_list": draw(st.lists(st.dictionaries(KEYS, JSON, max_size=2), max_size=2)),
             "order_notes": [{"content": draw(GOOD_TEXT), "date_added": draw(GOOD_DATE)}],
             "order_items": [item() for _ in range(draw(st.integers(0, 3)))],
             **draw(st.dictionaries(KEYS, JSON, max_size=2))}
    if draw(st.booleans()):  # one hostile value somewhere
        where = draw(st.sampled_from(["order", "item", "address"]))
        target = {"order": order, "address": order["shipping"],
                  "item": order["order_items"][0] if order["order_items"] else order}[where]
        target[draw(KEYS)] = draw(st.one_of(FREE, NUMBERS, WEIRD, SURROGATES, NUMERIC_TEXT))
    return order


# ---- JSON text of a raw order -----------------------------------------------------------------------------------


def to_text(value: Any) -> str:
    """JSON text of a JSON-able value, Decimals as their literal; ``None`` if it is not JSON-able."""
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError
        return "{" + ",".join(f"{json.dumps(k)}:{to_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_text(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else "NaN"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return json.dumps(value)
    raise TypeError


def check_text(raw: Any) -> None:
    """From JSON text: what the reference gives for what ``json.loads(..., parse_float=Decimal)`` reads."""
    try:
        text = to_text(raw)
    except (TypeError, ValueError, RecursionError):
        return
    try:
        data = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        return
    reference = outcome(pydantic_parse_order, data)
    same_outcome(outcome(parse_order_json, text), reference)
    same_outcome(outcome(parse_order_json, text.encode("utf-8", "surrogatepass")), reference)
    same_outcome(outcome(parse_order, load_json(text)), reference)


# ---- the properties ---------------------------------------------------------------------------------------------


@PROPERTY
@given(record(Order))
def test_random_orders_full_of_hostile_values_give_the_reference_result_or_message(raw):
    check(raw)
    check_text(raw)


@PROPERTY
@given(record(Order, values=TYPED_VALUES, extras=st.one_of(st.just({}), st.just({}), st.just({}),
                                                           st.dictionaries(KEYS, FREE, max_size=1))))
def test_order_desk_text_gives_the_reference_result_or_message(raw):
    check_text(raw)
    check(raw)


@PROPERTY
@given(likely_order())
def test_order_desk_shaped_orders_give_the_reference_result_or_message(raw):
    check(raw)
    check_text(raw)


@PROPERTY
@given(st.one_of(record(OrderItem), record(Shipment), record(Note), record(Address)))
def test_nested_records_give_the_reference_result_or_message(raw):
    for field in ("order_items", "order_shipments", "order_notes", "shipping"):
        wrapped = {field: [raw] if field != "shipping" else raw}
        check(wrapped)
        check_text(wrapped)


TEXTS = st.one_of(
    st.builds(to_text, JSON),
    st.builds(lambda v, cut: to_text(v)[:cut], JSON, st.integers(0, 40)),
    st.text(alphabet='{}[]",:0123456789.eE+-tfrueanlsNIy \\u\t\ud800', max_size=30),
    st.sampled_from(["NaN", "-Infinity", "[1e400]", "\ufeff{}", '"\\ud800"', '"\\udc00\\ud800"', "1" * 5000,
                     "[" * 2000 + "]" * 2000, '{"a":1,"a":2.50}', "01", " {} ", "", '"\\u0000"']),
)


def load_outcome(text: str | bytes) -> Any:
    try:
        return load_json(text)
    except Exception as exc:
        return (type(exc), str(exc))


@PROPERTY
@given(TEXTS)
def test_load_json_reads_what_json_loads_with_parse_float_decimal_reads(text):
    try:
        expected = json.loads(text, parse_float=Decimal)
    except Exception as exc:
        expected = (type(exc), str(exc))
    got = load_outcome(text)
    if isinstance(expected, tuple):
        assert got == expected
    elif isinstance(expected, float):  # NaN, Infinity: json's floats
        assert isinstance(got, float) and repr(got) == repr(expected)
    else:
        same(got, expected, "json")


# ---- examples ----------------------------------------------------------------------------------------------


def example_orders() -> list[str]:
    lines = (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines()
    texts = []
    for line in lines:
        data = json.loads(line)
        texts.append(json.dumps(data["order"] if "event" in data else data))
    return texts


@pytest.mark.parametrize("text", example_orders())
def test_the_example_orders_are_the_same_from_text_from_a_dict_and_by_the_reference(text):
    reference = pydantic_parse_order(json.loads(text, parse_float=Decimal))
    same(parse_order_json(text), reference)
    if not isinstance(json.loads(text).get("id"), int):  # a number for a text field: the untyped path takes it
        same(_FAST.fast_typed(text), reference)
    same(parse_order(json.loads(text, parse_float=Decimal)), reference)


def test_json_floats_stay_exact_decimals_and_keep_their_text():
    order = parse_order_json('{"order_total": 12.50, "order_metadata": {"r": 0.10000000000000000001, "n": 1e5}}')
    assert str(order["order_total"]) == "12.50"
    assert order["order_metadata"] == {"r": Decimal("0.10000000000000000001"), "n": Decimal("1E+5")}
    assert str(load_json('[12.50]')[0]) == "12.50"


@pytest.mark.parametrize("raw, message", [
    ({"order_items": [{"quantity": "1.5"}]}, "invalid order: order_items[0].quantity: not a whole number: '1.5'"),
    ({"email": "a\ud800b"}, "invalid order: email: text with a lone surrogate (\\ud800-\\udfff) is not valid Unicode"),
    ({"order_total": "1e999999999"}, "invalid order: order_total: 1e999999999 is out of range"),
    ({"order_metadata": {"deep": nested(150)}}, "nest more than 100 levels deep"),
])
def test_refusals_name_the_field_from_a_dict_and_from_text(raw, message):
    with pytest.raises(OrderError) as from_dict:
        parse_order(raw)
    with pytest.raises(OrderError) as from_text:
        parse_order_json(json.dumps(raw))
    assert message in str(from_dict.value) and str(from_text.value) == str(from_dict.value)


def test_text_that_is_not_json_or_not_an_object_is_an_order_error():
    with pytest.raises(OrderError, match="invalid JSON: Expecting value at line 1 column 1"):
        parse_order_json("nope")
    with pytest.raises(OrderError, match="invalid JSON: nested too deeply"):
        parse_order_json("[" * 100_000)
    with pytest.raises(OrderError, match="order must be a JSON object, got list"):
        parse_order_json("[1]")


def test_msgspec_refuses_every_lone_surrogate_so_decoded_text_needs_no_check():
    from ruledesk.engine.model.fastorder import _decode

    for text in ['"\\ud800"', '"\\udc00"', '"\\ud800x"', '"\\ud800\\u0041"', '"\\udc00\\ud800"', '{"\\udfff": 1}',
                 '"\ud800"', b'"\xed\xa0\x80"']:
        with pytest.raises(Exception):
            _decode(text)
    assert _decode('"\\ud83d\\ude00"') == "😀"


def test_every_declared_field_of_every_model_has_a_fast_path_kind():
    from ruledesk.engine.model import order as om

    source = _FAST.sources["checked"]
    for model in (Order, Address, OrderItem, Shipment, Note):
        for name in model.model_fields:
            assert f"get({name!r})" in source
    assert om.ORDER_TYPE  # the static types are unaffected


def test_a_field_of_an_unknown_kind_stops_the_generation():
    from ruledesk.engine.model import order as om

    class Odd(om.OrderDeskModel):
        ratio: Annotated[float | None, BeforeValidator(om._to_decimal)] = None

    with pytest.raises(TypeError, match="no fast path for Odd.ratio"):
        order_parser(Odd, COERCIONS, lambda raw: raw, OrderError)


def test_a_new_field_of_a_known_kind_is_validated_without_more_code():
    from ruledesk.engine.model import order as om

    class Wider(om.Order):
        gift_total: om.Money = None

    parser = order_parser(Wider, COERCIONS, lambda raw: om._parse(Wider, raw, "order"), OrderError)
    raw = {"gift_total": "1.50", "x": 1}
    fast = parser.parse(raw)
    same(fast, om._parse(Wider, raw, "order"))
    assert list(fast)[-2:] == ["gift_total", "x"] and fast["gift_total"] == Decimal("1.50")


@pytest.mark.parametrize("text", example_orders()[:5])
def test_a_parsed_order_validates_again_to_itself_on_the_fast_path(text):
    parsed = parse_order_json(text)
    _FAST.fast(parsed)  # no fallback: UTC datetimes, Decimals and ints are common shapes too
    again = parse_order(parsed)
    same(again, parsed)
    same(again, pydantic_parse_order(parsed))
