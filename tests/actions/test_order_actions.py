"""Every built-in order, folder and shipment action, run directly on a parsed order."""

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

import ruledesk.actions  # noqa: F401  (registers the catalogue)
from ruledesk.engine.model.catalogue import ACTIONS
from ruledesk.engine.model.order import parse_order
from ruledesk.engine.model.context import ActionContext, ActionError, Event

NOW = dt.datetime(2024, 6, 1, 9, 30, tzinfo=dt.timezone.utc)

CORE_ACTIONS = {
    "Move to Folder", "Tag Order", "Remove Tag", "Set Checkout Data", "Remove Checkout Data",
    "Set Order Metadata", "Remove Order Metadata", "Set Order Metadata Timestamp", "Set Order Field",
    "Set Shipping Method", "Set Item Metadata", "Set Item Field", "Add Note", "Add Shipment",
    "Stop Processing Rules",
}


@pytest.fixture
def order():
    return parse_order(
        {
            "id": 1001,
            "folder": "New",
            "tag_name": "old",
            "tag_color": "#000000",
            "checkout_data": {"gift": "yes"},
            "order_metadata": {"source": "etsy"},
            "order_items": [{"id": 7, "code": "MUG", "price": "10", "quantity": 1}],
        }
    )


def run(action_name, order, /, *, item=None, store=None, **params):
    spec = ACTIONS[action_name]
    ctx = ActionContext(order, Event("Order is Imported", order), store or {}, item=item, clock=lambda: NOW)
    details = spec.run(ctx, spec.params(**params))
    return ctx, details


def emitted(ctx):
    return [(e.name, e.payload) for e in ctx.emitted]


def test_the_core_actions_are_exactly_the_ones_tested_here():
    # external core actions (Send Email) are tested against their servers in their own modules
    assert {spec.name for spec in ACTIONS if spec.source == "core" and not spec.external} == CORE_ACTIONS


def test_move_to_folder_changes_folder_and_emits_folder_is_changed(order):
    ctx, details = run("Move to Folder", order, folder="Needs Review")
    assert order["folder"] == "Needs Review" and ctx.changed
    assert details == {"from": "New", "to": "Needs Review"}
    assert emitted(ctx) == [("Folder is Changed", {"from_folder": "New", "to_folder": "Needs Review"})]


def test_move_to_the_same_folder_emits_nothing(order):
    ctx, _ = run("Move to Folder", order, folder="New")
    assert order["folder"] == "New" and not ctx.changed and emitted(ctx) == []


def test_move_to_folder_rejects_an_empty_name_and_unknown_params():
    with pytest.raises(ValidationError):
        ACTIONS["Move to Folder"].params(folder="")
    with pytest.raises(ValidationError):
        ACTIONS["Move to Folder"].params(folder="A", colour="red")


def test_tag_order_sets_name_and_color(order):
    ctx, _ = run("Tag Order", order, name="vip", color="#ff0000")
    assert (order["tag_name"], order["tag_color"]) == ("vip", "#ff0000") and ctx.changed
    run("Tag Order", order, name="plain")
    assert (order["tag_name"], order["tag_color"]) == ("plain", None)


def test_tagging_with_the_same_tag_changes_nothing(order):
    ctx, _ = run("Tag Order", order, name="old", color="#000000")
    assert not ctx.changed


def test_remove_tag_clears_both_fields(order):
    ctx, _ = run("Remove Tag", order)
    assert order["tag_name"] is None and order["tag_color"] is None and ctx.changed
    assert "tag_name" in order


def test_checkout_data_set_and_remove(order):
    ctx, _ = run("Set Checkout Data", order, field="wrap", value="red")
    assert order["checkout_data"] == {"gift": "yes", "wrap": "red"} and ctx.changed
    ctx, details = run("Remove Checkout Data", order, field="gift")
    assert order["checkout_data"] == {"wrap": "red"} and details == {"removed": True} and ctx.changed
    ctx, details = run("Remove Checkout Data", order, field="gift")
    assert details == {"removed": False} and not ctx.changed


def test_checkout_data_value_is_text():
    # Order Desk stores checkout data as text: a number is written as its text, a list is refused.
    assert ACTIONS["Set Checkout Data"].params(field="x", value=3).value == "3"
    with pytest.raises(ValidationError):
        ACTIONS["Set Checkout Data"].params(field="x", value=["a"])


def test_order_metadata_set_remove_and_timestamp(order):
    run("Set Order Metadata", order, field="batch", value="42")
    assert order["order_metadata"]["batch"] == "42"
    ctx, _ = run("Remove Order Metadata", order, field="source")
    assert "source" not in order["order_metadata"] and ctx.changed
    ctx, details = run("Set Order Metadata Timestamp", order, field="reviewed_at")
    assert order["order_metadata"]["reviewed_at"] == "2024-06-01 09:30:00" == details["value"]
    assert emitted(ctx) == []


def test_set_order_field_coerces_to_the_field_type(order):
    ctx, details = run("Set Order Field", order, field="order_total", value="19.90")
    assert order["order_total"] == Decimal("19.90") and isinstance(order["order_total"], Decimal)
    assert details == {"field": "order_total", "from": None, "to": Decimal("19.90")} and ctx.changed
    run("Set Order Field", order, field="email", value="a@example.com")
    assert order["email"] == "a@example.com"


def test_set_order_field_fails_on_bad_field_or_value(order):
    with pytest.raises(ActionError, match="did you mean 'email'"):
        run("Set Order Field", order, field="emial", value="x")
    with pytest.raises(ActionError, match="order_total: not a number"):
        run("Set Order Field", order, field="order_total", value="much")
    with pytest.raises(ActionError, match="Move to Folder"):
        run("Set Order Field", order, field="folder", value="Done")
    assert order["folder"] == "New" and order["order_total"] is None


def test_set_order_field_static_check_suggests_the_closest_field():
    check = ACTIONS["Set Order Field"].static_check
    assert check({"field": "shiping_method", "value": "UPS"}) == [
        ("field", "order has no field 'shiping_method'", "shipping_method")
    ]
    assert check({"field": "email", "value": "a@b.c"}) == []
    assert check({"field": "email"}) == []
    assert check({"value": "x"}) == []
    [(param, message, suggestion)] = check({"field": "order_total", "value": "lots"})
    assert param == "value" and "not a number" in message and suggestion is None
    assert check({"field": "order_total", "value": "{{ order.tax_total }}"}) == []
    [(param, message, _)] = check({"field": "order_items"})
    assert param == "field" and "only single values" in message


def test_set_shipping_method(order):
    ctx, details = run("Set Shipping Method", order, method="USPS Priority")
    assert order["shipping_method"] == "USPS Priority" and details == {"from": None, "to": "USPS Priority"}
    assert ctx.changed


def test_set_item_metadata_changes_the_current_item(order):
    item = order["order_items"][0]
    ctx, details = run("Set Item Metadata", order, item=item, field="gift", value="yes")
    assert order["order_items"][0]["metadata"] == {"gift": "yes"} and ctx.changed
    assert details == {"item": "7"}


def test_set_item_field_coerces_and_changes_the_current_item(order):
    item = order["order_items"][0]
    ctx, details = run("Set Item Field", order, item=item, field="quantity", value="3")
    assert item["quantity"] == 3 and ctx.changed
    assert details == {"item": "7", "field": "quantity", "from": 1, "to": 3}
    with pytest.raises(ActionError, match="did you mean 'price'"):
        run("Set Item Field", order, item=item, field="prize", value="1")


@pytest.mark.parametrize(("name", "params"), [
    ("Set Item Metadata", {"field": "gift", "value": "yes"}),
    ("Set Item Field", {"field": "code", "value": "X"}),
])
def test_item_actions_fail_without_a_current_item(order, name, params):
    with pytest.raises(ActionError, match="inside \"for item in order.order_items"):
        run(name, order, **params)


def test_set_item_field_static_check():
    check = ACTIONS["Set Item Field"].static_check
    assert check({"field": "quantty", "value": 2}) == [("field", "item has no field 'quantty'", "quantity")]
    assert check({"field": "quantity", "value": 2}) == []
    [(param, _, _)] = check({"field": "quantity", "value": "two"})
    assert param == "value"
    [(param, message, _)] = check({"field": "id", "value": "9"})
    assert param == "field" and "cannot be changed" in message


def test_add_note_appends_a_note_and_emits_note_added(order):
    ctx, _ = run("Add Note", order, text="check the artwork")
    assert order["order_notes"] == [{"date_added": NOW, "username": "ruledesk", "content": "check the artwork"}]
    assert emitted(ctx) == [("Note Added", {"note": "check the artwork"})] and ctx.changed


def test_add_shipment_appends_a_shipment_and_emits_shipment_is_added(order):
    ctx, _ = run(
        "Add Shipment", order, store={"id": "5"}, tracking_number="1Z999", carrier_code="UPS",
        shipment_method="Ground",
    )
    [shipment] = order["order_shipments"]
    assert shipment["tracking_number"] == "1Z999" and shipment["carrier_code"] == "UPS"
    assert shipment["shipment_method"] == "Ground" and shipment["date_added"] == NOW
    assert shipment["order_id"] == "1001" and shipment["store_id"] == "5"
    assert emitted(ctx) == [
        ("Shipment is Added", {"tracking_number": "1Z999", "carrier_code": "UPS", "shipment_method": "Ground"})
    ]
    assert ctx.changed


def test_add_shipment_method_is_optional(order):
    ctx, _ = run("Add Shipment", order, tracking_number="9400", carrier_code="USPS")
    assert order["order_shipments"][0]["shipment_method"] is None
    assert emitted(ctx)[0][1]["shipment_method"] is None


def test_stop_processing_rules_stops_without_changing_the_order(order):
    before = dict(order)
    ctx, details = run("Stop Processing Rules", order)
    assert ctx.stopped and not ctx.changed and details is None and order == before
    assert ACTIONS["Stop Processing Rules"].mutates_order is False


def test_every_action_has_a_description_and_declares_its_emitted_events():
    for spec in ACTIONS:
        assert spec.description and "\n" not in spec.description
    assert ACTIONS["Move to Folder"].emits == ("Folder is Changed",)
    assert ACTIONS["Add Note"].emits == ("Note Added",)
    assert ACTIONS["Add Shipment"].emits == ("Shipment is Added",)
