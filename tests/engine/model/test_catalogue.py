"""The event and action catalogues: lookup, suggestions, copies, and the events of section 6."""

import pytest

import ruledesk.actions  # noqa: F401  (registers every event and action)
from ruledesk.engine.model.catalogue import ACTIONS, EVENTS, ActionSpec, EventSpec

SECTION_6_EVENTS = {
    "Order is Imported": ("core", set()),
    "Order is Created Manually": ("core", set()),
    "Folder is Changed": ("core", {"from_folder", "to_folder"}),
    "Order Details Changed": ("core", set()),
    "Order Address Changed": ("core", set()),
    "Item Changed": ("core", {"item_id"}),
    "Note Added": ("core", {"note"}),
    "Order is Duplicated": ("core", {"source_order_id", "store"}),
    "Order is Split": ("core", {"source_order_id"}),
    "Shipment is Added": ("core", {"tracking_number", "carrier_code", "shipment_method"}),
    "Order Confirmed": ("core", set()),
    "Order Scheduled to podOS": ("podos", set()),
    "Before Order Submitted to podOS": ("podos", set()),
    "After Order Submitted to podOS": ("podos", {"podos_order_id"}),
    "Order Not Submitted to podOS Because of Invalid SKU": ("podos", {"skus"}),
    "Order Not Submitted to podOS Because of General Error": ("podos", {"error"}),
    "Order Not Submitted to podOS Because No Products Available": ("podos", set()),
}


def test_lookup_ignores_case():
    assert ACTIONS["move to folder"].name == "Move to Folder"
    assert "ORDER IS IMPORTED" in EVENTS
    assert EVENTS.get("folder IS changed").name == "Folder is Changed"
    assert ACTIONS.get("Move to Foldr") is None
    with pytest.raises(KeyError):
        ACTIONS["Move to Foldr"]


def test_typos_get_suggestions():
    assert ACTIONS.suggest("Move to Foldr")[0] == "Move to Folder"
    assert EVENTS.suggest("Order is Imprted")[0] == "Order is Imported"
    assert ACTIONS.suggest("add note")[0] == "Add Note"


def test_registering_a_name_twice_is_an_error_unless_replacing():
    copy = ACTIONS.copy()
    with pytest.raises(ValueError, match="already registered"):
        copy.register(ActionSpec("move to folder"))
    copy.register(ActionSpec("move to folder"), replace=True)
    assert copy["Move to Folder"].run is None


def test_copies_are_independent():
    events = EVENTS.copy()
    events.register(EventSpec("Order Printed"))
    assert "Order Printed" in events and "Order Printed" not in EVENTS
    actions = ACTIONS.copy()
    actions.register(ActionSpec("Print Label"))
    assert "Print Label" in actions and "Print Label" not in ACTIONS
    assert len(actions) == len(ACTIONS) + 1


@pytest.mark.parametrize("name", sorted(SECTION_6_EVENTS))
def test_every_section_6_event_is_registered_with_its_payload_fields(name):
    source, fields = SECTION_6_EVENTS[name]
    spec = EVENTS[name]
    assert spec.name == name and spec.source == source
    assert set(spec.payload.model_fields) == fields
    assert spec.description and "\n" not in spec.description


def test_payloads_are_typed_and_keep_extra_keys():
    folder = EVENTS["Folder is Changed"].payload.model_validate({"from_folder": "New", "to_folder": "Done", "by": "x"})
    assert folder.to_folder == "Done" and folder.model_extra == {"by": "x"}
    with pytest.raises(ValueError):
        EVENTS["Folder is Changed"].payload.model_validate({"from_folder": "New"})
    skus = EVENTS["Order Not Submitted to podOS Because of Invalid SKU"].payload.model_validate({"skus": ["A", 2]})
    assert skus.skus == ["A", "2"]
    with pytest.raises(ValueError):
        EVENTS["Order Not Submitted to podOS Because of Invalid SKU"].payload.model_validate({"skus": "A"})


def test_the_podos_action_is_registered_by_the_integration_as_an_external_action():
    import ruledesk.actions  # noqa: F401 -- registers the integrations

    spec = ACTIONS["Submit Order to podOS"]
    assert spec.external and spec.job == "podos.submit" and spec.source == "podos"
    assert spec.emits == ("Order Scheduled to podOS",)
