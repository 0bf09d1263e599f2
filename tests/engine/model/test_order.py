"""The order model: coercions, defaults, errors, and the JSON round trip."""

import datetime as dt
import json
from decimal import Decimal

import pytest

from ruledesk.engine.model.order import (
    ITEM_TYPE,
    ORDER_TYPE,
    OrderError,
    dump_order,
    format_datetime,
    item_field_problem,
    order_field_problem,
    parse_order,
    to_json,
    validate_item_field,
    validate_order_field,
)
from ruledesk.engine.model.types import ANY, NUMBER, STRING, DATETIME, ListOf, MapOf

UTC = dt.timezone.utc

RAW = {
    "id": 1001,
    "email": "ann@example.com",
    "order_total": "12.50",
    "shipping_total": 4,
    "tax_total": 0.1,
    "email_count": "3",
    "date_added": "2024-05-01 13:45:00",
    "date_updated": "2024-05-01T15:45:00+02:00",
    "shipping": {"first_name": "Ann", "country": "US", "postal_code": 12345},
    "order_items": [
        {
            "id": 7,
            "code": "MUG-11",
            "price": "10",
            "quantity": "2",
            "weight": 0.3,
            "variation_list": {"Size": "L"},
            "metadata": {"podos_variant_id": "v-1", "ratio": 1.25},
            "print_url": "https://example.com/art.png",
        }
    ],
    "order_notes": [{"content": "hi", "date_added": "2024-05-02T08:00:00Z"}],
    "marketplace": "etsy",
}


def test_numeric_strings_and_numbers_become_exact_decimals():
    order = parse_order(RAW)
    assert order["order_total"] == Decimal("12.50") and str(order["order_total"]) == "12.50"
    assert order["shipping_total"] == Decimal(4) and isinstance(order["shipping_total"], Decimal)
    assert order["tax_total"] == Decimal("0.1")  # not 0.1000000000000000055...
    item = order["order_items"][0]
    assert item["price"] == Decimal("10") and isinstance(item["price"], Decimal)
    assert item["weight"] == Decimal("0.3")


def test_counts_become_ints_and_ids_strings():
    order = parse_order(RAW)
    assert order["order_items"][0]["quantity"] == 2 and type(order["order_items"][0]["quantity"]) is int
    assert order["email_count"] == 3
    assert order["id"] == "1001" and order["order_items"][0]["id"] == "7"
    assert order["shipping"]["postal_code"] == "12345"


def test_floats_in_free_form_maps_and_extras_are_decimals_too():
    order = parse_order({**RAW, "score": 0.7})
    assert order["order_items"][0]["metadata"]["ratio"] == Decimal("1.25")
    assert order["score"] == Decimal("0.7")


def test_missing_folder_null_and_empty_mean_new():
    assert parse_order({})["folder"] == "New"
    assert parse_order({"folder": None})["folder"] == "New"
    assert parse_order({"folder": ""})["folder"] == "New"
    assert parse_order({"folder": "Needs Review"})["folder"] == "Needs Review"


def test_dates_become_aware_utc():
    order = parse_order(RAW)
    assert order["date_added"] == dt.datetime(2024, 5, 1, 13, 45, tzinfo=UTC)
    assert order["date_added"].tzinfo is UTC
    assert order["date_updated"] == dt.datetime(2024, 5, 1, 13, 45, tzinfo=UTC)
    assert order["date_updated"].utcoffset() == dt.timedelta(0)
    assert order["order_notes"][0]["date_added"] == dt.datetime(2024, 5, 2, 8, tzinfo=UTC)
    naive = parse_order({"date_added": dt.datetime(2024, 1, 2, 3, 4, 5)})["date_added"]
    assert naive == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_order({"date_added": "0000-00-00 00:00:00"})["date_added"] is None


def test_every_declared_field_is_present_with_defaults():
    order = parse_order({})
    assert order["email"] is None and order["order_total"] is None
    assert order["shipping"]["country"] is None and order["customer"]["first_name"] is None
    assert order["order_items"] == [] and order["order_shipments"] == [] and order["discount_list"] == []
    assert order["checkout_data"] == {} and order["order_metadata"] == {}
    item = parse_order({"order_items": [{}]})["order_items"][0]
    assert item["metadata"] == {} and item["variation_list"] == {} and item["quantity"] is None


def test_order_desk_empty_arrays_and_nulls_stand_for_empty_objects():
    order = parse_order(
        {"shipping": [], "checkout_data": [], "order_items": [{"metadata": [], "variation_list": None}]}
    )
    assert order["shipping"]["city"] is None
    assert order["checkout_data"] == {}
    assert order["order_items"][0]["metadata"] == {} and order["order_items"][0]["variation_list"] == {}


def test_extra_fields_are_kept():
    order = parse_order(RAW)
    assert order["marketplace"] == "etsy"
    assert order["order_items"][0]["print_url"] == "https://example.com/art.png"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"order_total": "ten"}, "order_total: not a number: 'ten'"),
        ({"order_items": [{"quantity": "2.5"}]}, "order_items[0].quantity: not a whole number"),
        ({"order_items": [{}, {"price": "1,50"}]}, "order_items[1].price"),
        ({"date_added": "yesterday"}, "date_added: not a date"),
        ({"email": ["a"]}, "email: input should be a valid string"),
        ({"shipping": "nowhere"}, "shipping:"),
        ({"order_total": "NaN"}, "order_total: not a finite number"),
        ({"quantity_total": True}, "quantity_total: expected a number"),
    ],
)
def test_invalid_values_raise_order_error_naming_the_field(raw, needle):
    with pytest.raises(OrderError) as caught:
        parse_order(raw)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_non_object_is_an_order_error():
    with pytest.raises(OrderError, match="JSON object"):
        parse_order([1, 2])  # type: ignore[arg-type]


def test_dump_writes_order_desk_dates_and_exact_numbers():
    dumped = dump_order(parse_order(RAW))
    assert dumped["date_added"] == "2024-05-01 13:45:00"
    assert dumped["date_updated"] == "2024-05-01 13:45:00"
    assert dumped["order_total"] == 12.5
    assert dumped["shipping_total"] == 4 and type(dumped["shipping_total"]) is int
    assert dump_order({"x": Decimal("0.10000000000000000001")})["x"] == "0.10000000000000000001"


def test_to_json_round_trip_keeps_every_value():
    order = parse_order(RAW)
    text = to_json(order)
    assert '": ' not in text and '", "' not in text  # compact separators
    again = parse_order(json.loads(text))
    assert again == order
    huge = parse_order({"order_total": "0.10000000000000000001"})
    assert parse_order(json.loads(to_json(huge)))["order_total"] == Decimal("0.10000000000000000001")


def test_format_datetime_converts_to_utc():
    moment = dt.datetime(2024, 5, 1, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_datetime(moment) == "2024-05-01 13:00:00"


def test_static_types_are_closed_records_with_typed_fields():
    assert ORDER_TYPE.extra is None and ITEM_TYPE.extra is None
    assert ORDER_TYPE.fields["shipping"].extra is None
    assert ORDER_TYPE.fields["order_total"] == NUMBER
    assert ORDER_TYPE.fields["folder"] == STRING
    assert ORDER_TYPE.fields["date_added"] == DATETIME
    assert ORDER_TYPE.fields["order_items"] == ListOf(ITEM_TYPE)
    assert ITEM_TYPE.fields["metadata"] == MapOf(ANY)
    assert ITEM_TYPE.fields["variation_list"] == MapOf(STRING)


def test_validate_order_field_coerces_one_value():
    assert validate_order_field("order_total", "3.10") == Decimal("3.10")
    assert validate_order_field("email_count", "4") == 4
    assert validate_order_field("date_updated", "2024-06-01") == dt.datetime(2024, 6, 1, tzinfo=UTC)
    assert validate_order_field("email", "b@example.com") == "b@example.com"
    assert validate_item_field("quantity", 3) == 3


def test_validate_order_field_rejects_unknown_nested_and_read_only_fields():
    with pytest.raises(OrderError, match="did you mean 'email'"):
        validate_order_field("emial", "x")
    with pytest.raises(OrderError, match="only single values"):
        validate_order_field("shipping", {})
    with pytest.raises(OrderError, match="Move to Folder"):
        validate_order_field("folder", "Done")
    with pytest.raises(OrderError, match="id"):
        validate_item_field("id", "2")
    with pytest.raises(OrderError, match="order_total: not a number"):
        validate_order_field("order_total", "lots")


def test_field_problems_carry_the_closest_settable_field():
    assert order_field_problem("email") is None
    assert order_field_problem("shiping_method") == ("order has no field 'shiping_method'", "shipping_method")
    assert item_field_problem("quantty") == ("item has no field 'quantty'", "quantity")


# ---- hostile input: every value is bounded or refused with the field named -----------------------

def _nested(depth: int, leaf=None):
    """A map nested ``depth`` levels deep, built without recursion."""
    root = current = {}
    for _ in range(depth):
        current["a"] = {}
        current = current["a"]
    current["a"] = leaf
    return root


@pytest.mark.parametrize("field, value, says", [
    ("order_total", "1e999999999", "order_total: 1e999999999 is out of range"),
    ("order_total", "1e-999999999", "order_total: 1e-999999999 is out of range"),
    ("order_total", "1" * 101, "order_total: "),
    ("order_total", 10 ** 100_000, "order_total: a whole number of more than 1000 digits"),
    ("email_count", "1e400", "email_count: 1e400 is too large a count"),
    ("email_count", "1e999999999", "email_count: 1e999999999 is out of range"),
    ("order_metadata", {"n": 10 ** 100_000}, "order_metadata.n: a whole number of more than 1000 digits"),
    ("order_metadata", {"n": [Decimal("1e999999999")]}, "order_metadata.n[0]: 1E+999999999 is out of range"),
    ("order_metadata", {"n": Decimal("NaN")}, "order_metadata.n: not a finite number"),
    ("date_added", "0001-01-01T00:00:00+05:00", "date_added: not a date in range"),
], ids=["huge-exponent", "tiny-exponent", "101-digits", "100k-digit-int", "count-1e400", "count-huge-exponent",
        "metadata-100k-digit-int", "metadata-huge-decimal", "metadata-nan", "date-before-utc-range"])
def test_numbers_and_dates_out_of_range_are_refused_naming_the_field(field, value, says):
    with pytest.raises(OrderError) as caught:
        parse_order({field: value})
    assert says in str(caught.value)


def test_huge_numbers_are_refused_without_building_them():
    raw = {"order_total": "9" * 10 ** 6, "order_items": [{"quantity": "1e999999999"}]}
    started = dt.datetime.now()
    with pytest.raises(OrderError):
        parse_order(raw)
    with pytest.raises(OrderError, match="quantity"):
        parse_order({"order_items": [{"quantity": "1e999999999"}]})
    assert (dt.datetime.now() - started).total_seconds() < 1


def test_numbers_within_the_bounds_are_kept_exactly():
    order = parse_order({"order_total": "1e1000", "weight_total": "1e-1000", "email_count": "999999999999999999",
                         "order_metadata": {"n": 10 ** 999}})
    assert order["order_total"] == Decimal("1e1000") and order["weight_total"] == Decimal("1e-1000")
    assert order["email_count"] == 999999999999999999 and order["order_metadata"]["n"] == 10 ** 999
    assert json.loads(to_json(order), parse_float=Decimal)["order_total"] == 10 ** 1000


@pytest.mark.parametrize("nested", [_nested(100_000), [[[[]]]] * 2 + [_nested(150)]])
def test_deeply_nested_json_is_an_order_error_not_a_recursion_error(nested):
    with pytest.raises(OrderError, match="nest more than 100 levels deep"):
        parse_order({"order_metadata": {"deep": nested}})
    assert parse_order({"order_metadata": {"deep": _nested(90)}})["order_metadata"]["deep"]["a"]


@pytest.mark.parametrize("raw, where", [
    ({"email": "a\ud800b"}, "email"),
    ({"order_metadata": {"k": ["ok", "\udfff"]}}, "order_metadata.k[1]"),
    ({"order_metadata": {"\ud800": "x"}}, "order_metadata.\\ud800"),
    ({"shipping": {"city": "é\ud800"}}, "shipping.city"),
])
def test_lone_surrogates_are_refused_naming_the_field(raw, where):
    with pytest.raises(OrderError) as caught:
        parse_order(raw)
    message = str(caught.value)
    assert f"{where}: text with a lone surrogate" in message
    message.encode("utf-8")  # the message itself can be printed


def test_to_json_never_writes_text_that_is_not_valid_utf8():
    text = to_json({"note": "caf\u00e9 \ud800", "n": Decimal("1e999999"), "tiny": Decimal("1e-999999")})
    text.encode("utf-8")
    assert json.loads(text) == {"note": "caf\u00e9 \ud800", "n": "1E+999999", "tiny": "1E-999999"}
    assert to_json({"note": "caf\u00e9"}) == '{"note":"caf\u00e9"}'  # valid text stays unescaped


def test_bounded_value_holds_free_json_to_the_order_bounds():
    from ruledesk.engine.model.order import bounded_value

    assert bounded_value({"skus": ["a", 1.5]}, "payload") == {"skus": ["a", Decimal("1.5")]}
    with pytest.raises(OrderError, match=r"invalid payload: skus\[0\]: a whole number of more than 1000 digits"):
        bounded_value({"skus": [10 ** 5000]}, "payload")
    with pytest.raises(OrderError, match="nest more than 100 levels"):
        bounded_value({"deep": _nested(200)}, "payload")
