"""Split Order: the largest-remainder division, the split itself (properties over random orders and
examples), its check-time and run-time errors, and the action through the engine and the CLI."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ruledesk.actions.split import (DECIMAL_FIELDS, SplitBy, SplitError, allocate, check_by, group_items,
                                    parse_by, split_order)
from ruledesk.engine import Engine, RulesetError
from ruledesk.engine.cli import app
from ruledesk.engine.model.catalogue import ACTIONS
from ruledesk.engine.model.context import ActionContext, ActionError, Event
from ruledesk.engine.model.order import parse_order

NOW = dt.datetime(2024, 6, 1, 9, 30, tzinfo=dt.timezone.utc)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(order, by):
    spec = ACTIONS["Split Order"]
    ctx = ActionContext(order, Event("Order is Imported", order), {}, clock=lambda: NOW)
    return ctx, spec.run(ctx, spec.params(by=by))


def item(item_id, price="10", quantity=1, **fields):
    return {"id": item_id, "price": price, "quantity": quantity, **fields}


@pytest.fixture
def order():
    return parse_order({
        "id": "1001", "email": "ann@example.com", "folder": "Print", "tag_name": "vip", "email_count": 2,
        "shipping": {"first_name": "Ann", "country": "US"}, "customer": {"first_name": "Ann"},
        "checkout_data": {"gift": "yes"}, "order_metadata": {"source": "etsy"},
        "product_total": "60", "shipping_total": "10", "tax_total": "4.80", "discount_total": "-5",
        "order_total": "69.80", "quantity_total": 4, "weight_total": "2.5",
        "date_added": "2024-05-01 10:00:00",
        "order_notes": [{"content": "call first"}], "order_shipments": [{"tracking_number": "1Z"}],
        "discount_list": [{"code": "SPRING", "amount": "5"}],
        "order_items": [
            item("a", "10", 1, code="MUG", name="Mug", category_code="home", delivery_type="print",
                 weight="0.5", variation_list={"Size": "L"}, metadata={"vendor": "acme"}),
            item("b", "20", 2, code="TEE", name="Tee", category_code="apparel", delivery_type="ship",
                 weight="0.5", variation_list={"Size": "M"}, metadata={"vendor": "zed"}),
            item("c", "10", 1, code="MUG", name="Mug", category_code="home", delivery_type="print",
                 weight="0.5", variation_list={"Size": "L"}, metadata={"vendor": "acme"}),
        ],
    })


# --- allocate -----------------------------------------------------------------------------

totals = st.decimals(min_value=-100000, max_value=100000, places=3, allow_nan=False, allow_infinity=False)
weights = st.lists(st.one_of(st.integers(-50, 500), st.decimals(min_value=-50, max_value=500, places=2)),
                   min_size=1, max_size=8)


def _unit(total: Decimal, places: int) -> Fraction:
    """The unit ``allocate`` divides in: 10**-places, or the total's own smallest digit if finer."""
    exponent = total.normalize().as_tuple().exponent if total else 0
    return Fraction(1, 10 ** max(places, -exponent))


@PROPERTY
@given(totals, weights)
def test_allocate_sums_exactly_and_stays_within_one_unit_of_the_exact_share(total, weights):
    pieces = allocate(total, weights)
    assert len(pieces) == len(weights)
    assert sum(Fraction(piece) for piece in pieces) == total
    unit = _unit(total, 2)
    whole = sum(Fraction(w) for w in weights)
    for index, (piece, weight) in enumerate(zip(pieces, weights)):
        assert Fraction(piece) % unit == 0  # a whole number of units (cents for a total in cents)
        exact = Fraction(total) * Fraction(weight) / whole if whole else (Fraction(total) if index == 0 else 0)
        assert abs(Fraction(piece) - exact) < unit


def test_allocate_gives_the_leftover_cents_to_the_largest_remainders_earlier_first():
    assert allocate(Decimal("10"), [1, 1, 1]) == [Decimal("3.34"), Decimal("3.33"), Decimal("3.33")]
    assert allocate(Decimal("0.05"), [1, 1, 1, 1]) == [Decimal("0.02"), Decimal("0.01"), Decimal("0.01"),
                                                       Decimal("0.01")]
    assert allocate(Decimal("1"), [Decimal("0.1"), Decimal("0.6"), Decimal("0.3")]) == [
        Decimal("0.10"), Decimal("0.60"), Decimal("0.30")]
    assert allocate(Decimal("-7.01"), [3, -1, 2]) == [Decimal("-5.26"), Decimal("1.75"), Decimal("-3.50")]


def test_allocate_divides_in_the_totals_own_smallest_unit_when_finer_than_a_cent():
    assert allocate(Decimal("10.005"), [1, 2]) == [Decimal("3.335"), Decimal("6.670")]
    assert allocate(Decimal("10.500"), [1, 1, 1]) == [Decimal("3.50"), Decimal("3.50"), Decimal("3.50")]
    assert allocate(Decimal("7"), [1, 1], places=0) == [Decimal("4"), Decimal("3")]


def test_allocate_with_weights_summing_to_zero_gives_everything_to_the_first():
    assert allocate(Decimal("5"), [0, 0, 0]) == [Decimal("5.00"), Decimal("0.00"), Decimal("0.00")]
    assert allocate(Decimal("5"), [10, -10]) == [Decimal("5.00"), Decimal("0.00")]


def test_allocate_keeps_a_huge_total_within_the_order_models_digits():
    pieces = allocate(Decimal("1E+200"), [1, 1, 1])
    assert sum(Fraction(piece) for piece in pieces) == 10 ** 200  # exactly (a Decimal sum rounds to 28 digits)
    assert all(len(piece.as_tuple().digits) <= 100 for piece in pieces)
    with pytest.raises(ValueError, match="at least one weight"):
        allocate(Decimal("1"), [])


# --- random orders ------------------------------------------------------------------------

money = st.one_of(st.none(), st.decimals(min_value=-1000, max_value=10000, places=2),
                  st.decimals(min_value=-100, max_value=100, places=3))
key_values = st.one_of(st.none(), st.just(""), st.sampled_from(["A", "B", "a", "C"]))
meta_values = st.one_of(st.none(), st.just(""), st.sampled_from(["acme", "zed", "1"]), st.just(1),
                        st.booleans(), st.just(["x"]))
BY = ["code", "name", "category_code", "delivery_type", "variation Size", "metadata vendor"]


@st.composite
def random_orders(draw):
    count = draw(st.integers(0, 7))
    items = []
    for index in range(count):
        raw = {"id": f"i{index}",
               "price": draw(st.one_of(st.none(), st.just(0), st.decimals(min_value=-20, max_value=500, places=2))),
               "quantity": draw(st.one_of(st.none(), st.integers(0, 5))),
               "weight": draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=10, places=3)))}
        for field in ("code", "name", "category_code", "delivery_type"):
            value = draw(key_values)
            if value is not None or draw(st.booleans()):
                raw[field] = value
        size = draw(key_values)
        raw["variation_list"] = {} if size is None else {"Size": size}
        vendor = draw(meta_values)
        raw["metadata"] = {} if vendor is None and draw(st.booleans()) else {"vendor": vendor}
        items.append(raw)
    raw_order = {"id": draw(st.sampled_from(["1001", "X-9"])), "order_items": items,
                 "order_metadata": draw(st.sampled_from([{}, {"split_count": 2}, {"note": "n"}]))}
    for field in DECIMAL_FIELDS:
        raw_order[field] = draw(money)
    return parse_order(raw_order)


def _weight(items, field):
    if field == "quantity_total":
        return sum(Fraction(i["quantity"] or 0) for i in items)
    number = "weight" if field == "weight_total" else "price"
    return sum(Fraction(i[number] or 0) * (i["quantity"] or 0) for i in items)


@PROPERTY
@given(random_orders(), st.sampled_from(BY))
def test_the_pieces_partition_the_items_and_every_total_sums_exactly(order, by):
    before = copy.deepcopy(order)
    pieces = split_order(order, by, NOW)
    assert order == before  # the original dict is left as it was
    groups = group_items(before["order_items"], parse_by(by))
    if len(groups) <= 1:
        assert pieces == [order]
        return
    # the items: a partition (every item exactly once, unchanged), the original keeps the first group
    originals = {i["id"]: i for i in before["order_items"]}
    seen = [i["id"] for piece in pieces for i in piece["order_items"]]
    assert sorted(seen) == sorted(originals)
    assert all(i == originals[i["id"]] for piece in pieces for i in piece["order_items"])
    assert pieces[0]["order_items"] == groups[0] and [p["order_items"] for p in pieces] == groups
    value = parse_by(by).value_of
    assert all(len({json.dumps(value(i), default=str) for i in piece["order_items"]}) == 1
               or all(value(i) in (None, "") for i in piece["order_items"]) for piece in pieces)
    # ids: the original's, then -S{n} counting on from the recorded count
    done = before["order_metadata"].get("split_count", 0)
    assert [p["id"] for p in pieces] == [before["id"]] + [f"{before['id']}-S{n}"
                                                         for n in range(done + 1, done + len(pieces))]
    assert pieces[0]["order_metadata"]["split_count"] == done + len(pieces) - 1
    # every total: None stays None; otherwise the pieces sum exactly, each within a unit of its share
    for field in DECIMAL_FIELDS:
        total = before[field]
        if total is None:
            assert all(p[field] is None for p in pieces)
            continue
        assert sum(Fraction(p[field]) for p in pieces) == total
        unit = _unit(total, 0 if field == "quantity_total" else 2)
        shares = [_weight(p["order_items"], field) for p in pieces]
        whole = sum(shares)
        for index, (piece, share) in enumerate(zip(pieces, shares)):
            exact = Fraction(total) * share / whole if whole else (Fraction(total) if index == 0 else 0)
            assert abs(Fraction(piece[field]) - exact) < unit


# --- examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("by, groups", [
    ("code", [["a", "c"], ["b"]]),
    ("name", [["a", "c"], ["b"]]),
    ("category_code", [["a", "c"], ["b"]]),
    ("delivery_type", [["a", "c"], ["b"]]),
    ("variation Size", [["a", "c"], ["b"]]),
    ("metadata vendor", [["a", "c"], ["b"]]),
    ("Metadata vendor", [["a", "c"], ["b"]]),
])
def test_every_by_form_splits_by_its_value(order, by, groups):
    ctx, detail = run(order, by)
    pieces = [order] + [e.order for e in ctx.emitted[1:]]
    assert [[i["id"] for i in p["order_items"]] for p in pieces] == groups
    assert [p["id"] for p in pieces] == ["1001", "1001-S1"]
    assert detail["split"] is True and detail["by"] == by[0].lower() + by[1:]
    assert [(p["id"], p["items"]) for p in detail["pieces"]] == [("1001", ["a", "c"]), ("1001-S1", ["b"])]


def test_the_money_is_divided_by_the_items_value(order):
    # values: a+c = 20, b = 40 (a third and two thirds); quantities 2 and 2; weights 1.0 and 1.0
    ctx, detail = run(order, "code")
    piece = ctx.emitted[1].order
    assert (order["product_total"], piece["product_total"]) == (Decimal("20.00"), Decimal("40.00"))
    assert (order["shipping_total"], piece["shipping_total"]) == (Decimal("3.33"), Decimal("6.67"))
    assert (order["tax_total"], piece["tax_total"]) == (Decimal("1.60"), Decimal("3.20"))
    assert (order["discount_total"], piece["discount_total"]) == (Decimal("-1.67"), Decimal("-3.33"))
    assert (order["order_total"], piece["order_total"]) == (Decimal("23.27"), Decimal("46.53"))
    assert (order["quantity_total"], piece["quantity_total"]) == (Decimal("2"), Decimal("2"))
    assert (order["weight_total"], piece["weight_total"]) == (Decimal("1.25"), Decimal("1.25"))
    assert order["handling_total"] is None and piece["handling_total"] is None
    assert detail["pieces"][1]["totals"]["order_total"] == Decimal("46.53")


def test_free_items_leave_the_money_with_the_original():
    order = parse_order({"id": "7", "shipping_total": "5", "order_items": [
        item("a", "0", code="A"), item("b", "0", code="B")]})
    ctx, _ = run(order, "code")
    assert (order["shipping_total"], ctx.emitted[1].order["shipping_total"]) == (Decimal("5.00"), Decimal("0.00"))


def test_a_new_order_copies_the_order_but_not_its_history(order):
    ctx, _ = run(order, "metadata vendor")
    piece = ctx.emitted[1].order
    for field in ("email", "folder", "tag_name", "shipping", "customer", "checkout_data"):
        assert piece[field] == order[field]
    assert piece["order_metadata"] == {"source": "etsy", "split_from": "1001"}
    assert order["order_metadata"] == {"source": "etsy", "split_count": 1}
    assert piece["order_notes"] == piece["order_shipments"] == piece["discount_list"] == []
    assert order["order_notes"] and order["order_shipments"] and order["discount_list"]
    assert piece["date_added"] == piece["date_updated"] == NOW and order["date_added"] != NOW
    assert piece["email_count"] == 0 and order["email_count"] == 2
    piece["shipping"]["country"] = "CA"
    assert order["shipping"]["country"] == "US"  # a deep copy: changing a piece never changes the original


def test_order_is_split_fires_for_the_original_and_every_new_order(order):
    order["order_items"].append(parse_order({"order_items": [item("d", code="CAP")]})["order_items"][0])
    ctx, _ = run(order, "code")
    assert [(e.name, e.payload, None if e.order is None else e.order["id"]) for e in ctx.emitted] == [
        ("Order is Split", {"source_order_id": "1001"}, None),
        ("Order is Split", {"source_order_id": "1001"}, "1001-S1"),
        ("Order is Split", {"source_order_id": "1001"}, "1001-S2"),
    ]
    assert ctx.changed


def test_an_order_with_one_group_is_not_split(order):
    before = copy.deepcopy(order)
    ctx, detail = run(order, "metadata missing")
    assert detail == {"split": False, "by": "metadata missing", "reason": "no item has metadata missing"}
    assert order == before and not ctx.changed and ctx.emitted == []
    _, detail = run(order, "variation size")
    assert detail["reason"] == 'no item has variation size (did you mean "Size"?)'
    order["order_items"] = order["order_items"][:1]
    _, detail = run(order, "code")
    assert detail["reason"] == 'its one item has code "MUG"'
    order["order_items"] = []
    _, detail = run(order, "code")
    assert detail["reason"] == "the order has no items"


def test_values_are_compared_exactly_and_by_kind_and_items_without_one_form_a_group():
    order = parse_order({"id": "5", "order_items": [
        item("1", metadata={"k": "1"}), item("2", metadata={"k": 1}), item("3", metadata={"k": True}),
        item("4", metadata={}), item("5", metadata={"k": "A"}), item("6", metadata={"k": "a"}),
        item("7", metadata={"k": ""}), item("8", metadata={"k": None}), item("9", metadata={"k": "1"})]})
    groups = group_items(order["order_items"], SplitBy("metadata", "k"))
    assert [[i["id"] for i in group] for group in groups] == [["1", "9"], ["2"], ["3"], ["4", "7", "8"], ["5"], ["6"]]


def test_a_key_may_hold_spaces():
    order = parse_order({"id": "5", "order_items": [item("1", metadata={"gift wrap": "red"}),
                                                    item("2", metadata={"gift wrap": "blue"})]})
    assert [p["id"] for p in split_order(order, "metadata gift wrap", NOW)] == ["5", "5-S1"]


def test_ids_stay_unique_when_the_original_or_a_piece_is_split_again(order):
    ctx, _ = run(order, "code")  # 1001 keeps a, c (both MUG, vendor acme); 1001-S1 gets b
    piece = ctx.emitted[1].order
    order["order_items"][1]["metadata"]["vendor"] = "other"
    ctx, detail = run(order, "metadata vendor")
    assert [p["id"] for p in detail["pieces"]] == ["1001", "1001-S2"]
    assert order["order_metadata"]["split_count"] == 2
    piece["order_items"].append(copy.deepcopy(piece["order_items"][0]) | {"id": "b2", "code": "HAT"})
    ctx, detail = run(piece, "code")
    assert [p["id"] for p in detail["pieces"]] == ["1001-S1", "1001-S1-S1"]
    assert ctx.emitted[1].order["order_metadata"]["split_from"] == "1001-S1"
    assert ctx.emitted[1].payload == {"source_order_id": "1001-S1"}


@pytest.mark.parametrize("order_metadata, problem", [
    ({"split_count": "many"}, "order_metadata.split_count is 'many'"),
    ({"split_count": -1}, "order_metadata.split_count is -1"),
    ({"split_count": "\u00b2"}, "order_metadata.split_count is '\u00b2'"),  # a digit, but not a decimal one
])
def test_a_split_that_cannot_be_numbered_fails(order, order_metadata, problem):
    order["order_metadata"] = order_metadata
    with pytest.raises(ActionError, match=problem):
        run(order, "code")


def test_an_order_without_an_id_cannot_be_split(order):
    order["id"] = None
    with pytest.raises(ActionError, match="without an id"):
        run(order, "code")


@pytest.mark.parametrize("by, message, suggestion", [
    ("sku", 'cannot split by "sku": write code, name', "code"),
    ("categry_code", 'cannot split by "categry_code"', "category_code"),
    ("variation_list Size", 'cannot split by "variation_list Size"', "variation Size"),
    ("variation", '"variation" needs the name of the variation after it', None),
    ("metadata  ", '"metadata" needs the metadata key after it', None),
    ("code Size", 'cannot split by "code Size": code takes no name', "code"),
    ("   ", "nothing to split by", None),
])
def test_a_bad_by_is_explained_with_a_suggestion(order, by, message, suggestion):
    with pytest.raises(SplitError) as caught:
        parse_by(by)
    assert str(caught.value).startswith(message) and caught.value.suggestion == suggestion
    assert check_by({"by": by}) == [("by", str(caught.value), suggestion)]
    with pytest.raises(ActionError, match="did you mean" if suggestion else message):
        run(order, by)


def test_check_by_leaves_templates_and_good_values_alone():
    assert check_by({"by": "{{ order.order_metadata.split_by }}"}) == []
    assert check_by({"by": "variation Size"}) == []
    assert check_by({}) == []
    assert check_by({"by": Decimal("12")})[0][1].startswith('cannot split by "12"')  # a number is its text


def test_a_bad_literal_by_is_a_check_error_with_a_suggestion():
    source = 'rule "r" {\n    when "Order is Imported"\n    then "Split Order"(by: "categry_code")\n}\n'
    with pytest.raises(RulesetError) as caught:
        Engine.from_source(source, "a.rules")
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.code, diagnostic.loc.line, diagnostic.loc.col) == ("E208", 3, 28)
    assert diagnostic.message.startswith('cannot split by "categry_code"')
    assert diagnostic.suggestion == 'did you mean "category_code"?'


# --- through the engine and the CLI -------------------------------------------------------

RULES = """\
rule "Split by vendor" {
    when "Order is Imported"
    then "Split Order"(by: "{{ order.order_metadata.split_by }}")
}

rule "Tag every piece" {
    when "Order is Split"
    then "Tag Order"(name: "from {{ event.source_order_id }}")
}

rule "New orders to review" {
    when "Order is Split"
    if order.order_metadata.split_from is set
    then "Move to Folder"(folder: "Review")
}
"""

RAW_ORDER = {"id": "1001", "shipping_total": "9.99", "order_metadata": {"split_by": "metadata vendor"},
             "order_items": [item("a", "5", metadata={"vendor": "acme"}), item("b", "5", metadata={"vendor": "zed"}),
                             item("c", "5", metadata={"vendor": "yak"})]}


def test_rules_fire_on_order_is_split_for_every_resulting_order():
    result = Engine.from_source(RULES, clock=lambda: NOW).process({"event": "Order is Imported", "order": RAW_ORDER})
    assert [(d.event, d.order_id, d.fired) for d in result.decisions] == [
        ("Order is Imported", "1001", ["Split by vendor"]),
        ("Order is Split", "1001", ["Tag every piece"]),
        ("Order is Split", "1001-S1", ["Tag every piece", "New orders to review"]),
        ("Order is Split", "1001-S2", ["Tag every piece", "New orders to review"]),
        ("Folder is Changed", "1001-S1", []),
        ("Folder is Changed", "1001-S2", []),
    ]
    orders = {ref.order_id: order for ref, order in result.orders.items()}
    assert list(orders) == ["1001", "1001-S1", "1001-S2"]
    assert [orders[o]["folder"] for o in orders] == ["New", "Review", "Review"]
    assert {orders[o]["tag_name"] for o in orders} == {"from 1001"}
    assert sum(o["shipping_total"] for o in orders.values()) == Decimal("9.99")
    assert [o["shipping_total"] for o in orders.values()] == [Decimal("3.33")] * 3


def test_a_by_that_renders_badly_fails_the_action_at_run_time():
    raw = RAW_ORDER | {"order_metadata": {"split_by": "vendor"}}
    result = Engine.from_source(RULES).process(raw)
    [record] = result.decisions[0].actions
    assert record.status == "failed" and record.error.startswith('cannot split by "vendor"')
    assert len(result.decisions) == 1 and len(result.orders) == 1


def test_ruledesk_run_prints_the_decisions_of_the_new_orders(tmp_path):
    rules = tmp_path / "split.rules"
    rules.write_text(RULES, encoding="utf-8")
    orders = tmp_path / "orders.jsonl"
    orders.write_text(json.dumps(RAW_ORDER) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--rules", str(rules), "--format", "json", str(orders)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["event"], d["order_id"]) for d in lines] == [
        ("Order is Imported", "1001"), ("Order is Split", "1001"), ("Order is Split", "1001-S1"),
        ("Order is Split", "1001-S2"), ("Folder is Changed", "1001-S1"), ("Folder is Changed", "1001-S2")]
    split = lines[0]["actions"][0]
    assert split["status"] == "done" and [p["id"] for p in split["detail"]["pieces"]] == ["1001", "1001-S1", "1001-S2"]
    assert lines[0]["emitted"] == ["Order is Split"] * 3
    piece = lines[2]["order"]
    assert piece["order_metadata"] == {"split_by": "metadata vendor", "split_from": "1001"}
    assert [i["id"] for i in piece["order_items"]] == ["b"] and piece["folder"] == "Review"
