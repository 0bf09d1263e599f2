"""The cascade's result: one store per order, every order it touched, emitted events checked against
what the action declares (a bad one fails its action, never the whole call), and the firing limit."""

from __future__ import annotations

import copy

import pytest
from pydantic import BaseModel

from ruledesk.engine import ActionSpec, Engine, default_actions, default_events
from ruledesk.engine.model.catalogue import NoParams
from ruledesk.engine.model.settings import StoreSettings
from support import fixed_clock


class StoreParams(BaseModel):
    store: str


def copy_here(ctx, params: StoreParams) -> None:
    duplicate = copy.deepcopy(ctx.order)
    duplicate["id"] = f"{ctx.order['id']}-C"
    ctx.emit("Order is Duplicated", {"source_order_id": ctx.order["id"], "store": ctx.store["name"]},
             order=duplicate, store=params.store)


def emitting(name: str, payload: dict):
    def run(ctx, params) -> None:
        ctx.emit(name, payload)
    return run


def catalogue():
    actions = default_actions()
    actions.register(ActionSpec("Copy Here", StoreParams, copy_here, emits=("Order is Duplicated",)))
    actions.register(ActionSpec("Emit Unknown", NoParams, emitting("No Such Event", {}), emits=("No Such Event",)))
    actions.register(ActionSpec("Emit Undeclared", NoParams, emitting("Folder is Changed",
                                                                      {"from_folder": "a", "to_folder": "b"}),
                                emits=("Note Added",)))
    actions.register(ActionSpec("Emit Bad Payload", NoParams, emitting("Shipment is Added", {"carrier_code": "UPS"}),
                                emits=("Shipment is Added",)))
    return actions


STORES = [StoreSettings(name="alpha", settings={"label": "A"}), StoreSettings(name="beta", settings={"label": "B"})]


def engine_of(text: str) -> Engine:
    return Engine.from_source(text, actions=catalogue(), events=default_events(), stores=STORES, clock=fixed_clock)


def test_a_copied_order_runs_its_rules_with_its_own_store() -> None:
    engine = engine_of('''
        rule "Copy" { when "Order is Imported" if store.name == "alpha" then "Copy Here"(store: "beta") }
        rule "Label" { when "Order is Imported", "Order is Duplicated"
                       then "Set Order Metadata"(field: "seen_in", value: "{{ store.settings.label }}") }
    ''')
    result = engine.process({"event": "Order is Imported", "order": {"id": "7"}, "store": "alpha", "id": "e1"})
    assert [(d.event, d.store, d.order_id, d.fired) for d in result.decisions] == [
        ("Order is Imported", "alpha", "7", ["Copy", "Label"]),
        ("Order is Duplicated", "beta", "7-C", ["Label"])]
    assert {ref: order["order_metadata"]["seen_in"] for ref, order in result.orders.items()} == {
        ("alpha", "7"): "A", ("beta", "7-C"): "B"}
    [event] = result.events
    assert (event.id, event.name, event.order, event.cause) == ("e1.1", "Order is Duplicated", ("beta", "7-C"), "Copy")
    assert event.payload == {"source_order_id": "7", "store": "alpha"}


def test_an_emission_for_an_unknown_store_fails_the_action() -> None:
    engine = engine_of('rule "Copy" { when "Order is Imported" then "Copy Here"(store: "gamma") }')
    [decision] = engine.process({"event": "Order is Imported", "order": {"id": "7"}, "store": "alpha"}).decisions
    assert decision.actions[0].status == "failed" and "unknown store 'gamma'" in decision.actions[0].error


@pytest.mark.parametrize("action, message", [
    ("Emit Unknown", 'Emit Unknown emitted an unknown event "No Such Event"'),
    ("Emit Undeclared", 'Emit Undeclared emitted "Folder is Changed", which it does not declare (it declares: Note Added)'),
    ("Emit Bad Payload", 'Emit Bad Payload emitted bad payload for "Shipment is Added": tracking_number: Field required'),
])
def test_a_bad_emitted_event_fails_its_action_and_keeps_everything_else(action: str, message: str) -> None:
    engine = engine_of(f'''
        rule "Bad" {{ when "Order is Imported" then "{action}" "Tag Order"(name: "after") }}
        rule "Good" {{ when "Order is Imported" then "Move to Folder"(folder: "Next") }}
    ''')
    result = engine.process({"event": "Order is Imported", "order": {"id": "7"}, "store": "alpha"})
    first = result.decisions[0]
    assert [(a.action, a.status, a.error) for a in first.actions] == [
        (action, "failed", message), ("Tag Order", "done", None), ("Move to Folder", "done", None)]
    assert [d.event for d in result.decisions] == ["Order is Imported", "Folder is Changed"]
    assert [e.name for e in result.events] == ["Folder is Changed"]
    assert result.order["tag_name"] == "after"


def test_the_firing_limit_stops_the_cascade_and_marks_what_was_not_processed() -> None:
    engine = Engine.from_source('''
        rule "Ping" { when "Order is Imported", "Note Added" then "Add Note"(text: "again") }
    ''', clock=fixed_clock, max_firings=3)
    result = engine.process({"event": "Order is Imported", "order": {"id": "1"}})
    assert [d.fired for d in result.decisions] == [["Ping"], ["Ping"], ["Ping"], []]
    assert "firing limit 3 reached" in result.decisions[-1].stopped["reason"]
    assert [e.processed for e in result.events] == [True, True, True]
    assert len(result.order["order_notes"]) == 3


def test_an_action_that_changes_its_store_view_changes_nothing_for_the_next_events() -> None:
    def scribble(ctx, params) -> None:
        ctx.store["settings"]["label"] = "scribbled"
        ctx.store["name"] = "evil"

    actions = catalogue()
    actions.register(ActionSpec("Scribble", NoParams, scribble, mutates_order=False))
    engine = Engine.from_source('''
        rule "S" { when "Order is Imported" then "Scribble" "Add Note"(text: "n") }
        rule "L" { when "Note Added" then "Set Order Metadata"(field: "label", value: "{{ store.settings.label }}") }
    ''', actions=actions, events=default_events(), stores=STORES, clock=fixed_clock)
    for _ in range(2):
        result = engine.process({"event": "Order is Imported", "order": {"id": "1"}, "store": "alpha"})
        assert result.order["order_metadata"]["label"] == "A"
        assert [d.store for d in result.decisions] == ["alpha", "alpha"]
