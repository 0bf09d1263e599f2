"""Several stores: Copy Order to Store and Move Order to Store, and a copy's shipments passed back to its
original.  In memory (the cascade, MemoryRunner) and on the durable path the daemon runs (Worker with an
engine that hands other orders' events on through the inbox, DurableRunner; SQLite and PostgreSQL), where
the copy is shipped by the real podOS simulator on 127.0.0.1 and its shipment comes back by polling."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import SecretStr

from ruledesk.actions import builtin_handlers
from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine import Engine
from ruledesk.engine.daemon.worker import Worker
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.jobs.durable import DurableRunner
from ruledesk.engine.model.settings import PodosSettings, StoreSettings
from ruledesk.engine.run.decision import OrderRef
from ruledesk.engine.store.base import Inbound

from support import settle

TOKEN = "stores-s3cret-token"
ACME, SUPPLIER = "Acme Prints", "Supplier"
T0 = 1_795_000_000.0
POLL = 60.0

RULES = '''
rule "Send to the supplier" {
    when "Order is Imported"
    if store.name == "Acme Prints" and order.order_metadata.route == "copy"
    then "Copy Order to Store"(store: "Supplier")
}
rule "Hand over to the supplier" {
    when "Order is Imported"
    if store.name == "Acme Prints" and order.order_metadata.route == "move"
    then "Move Order to Store"(store: "Supplier")
}
rule "Supplier prints it" {
    when "Order is Imported"
    if store.name == "Supplier"
    then "Submit Order to podOS"
}
rule "Supplier sees the copy" {
    when "Order is Duplicated"
    then "Add Note"(text: "copy of {{ event.source_order_id }} from {{ event.store }}")
}
rule "Shipped" {
    when "Shipment is Added"
    then "Add Note"(text: "shipped {{ event.tracking_number }} in {{ store.name }}")
        "Move to Folder"(folder: "Shipped")
}
'''


def stores(url: str = "http://127.0.0.1:9") -> list[StoreSettings]:
    podos = PodosSettings(project="supplier", token=SecretStr(TOKEN), url=url, retries=0, timeout=5,
                          after_import_folder="Submitted", after_shipment_folder="Shipped", poll_interval=POLL)
    return [StoreSettings(name=ACME, id="10001"), StoreSettings(name=SUPPLIER, id="20002", podos=podos)]


def an_order(order_id: str = "1001", route: str = "copy") -> dict[str, Any]:
    return {"id": order_id, "email": "ada@example.com", "shipping_method": "USPS First Class",
            "shipping": {"first_name": "Ada", "address1": "1 Main St", "city": "Springfield", "country": "US"},
            "order_metadata": {"route": route},
            "order_items": [{"id": "1", "code": "POSTER-SUNRISE-18X24", "name": "Poster", "quantity": 1,
                             "price": "19.50", "metadata": {"podos_variant_id": "pv-55012"}}]}


def imported(order: dict[str, Any]) -> dict[str, Any]:
    return {"event": "Order is Imported", "order": order, "store": ACME, "id": f"imp-{order['id']}"}


def notes(order: dict[str, Any]) -> list[str]:
    return [n["content"] for n in order.get("order_notes") or ()]


def tracking(order: dict[str, Any]) -> list[str]:
    return [s["tracking_number"] for s in order.get("order_shipments") or ()]


@pytest.fixture
def sim():
    with Simulator(token=TOKEN, port=0) as simulator:
        yield simulator


# ---- the cascade and MemoryRunner ----------------------------------------------------------------


SHIP_RULES = '''
rule "Copy" { when "Order is Imported" if store.name == "Acme Prints" and order.order_metadata.route == "copy"
              then "Copy Order to Store"(store: "Supplier") }
rule "Move" { when "Order is Imported" if store.name == "Acme Prints" and order.order_metadata.route == "move"
              then "Move Order to Store"(store: "Supplier") }
rule "Ship it" { when "Order is Imported" if store.name == "Supplier"
                 then "Add Shipment"(tracking_number: "1Z-{{ order.id }}", carrier_code: "UPS") }
rule "Shipped" { when "Shipment is Added" then "Move to Folder"(folder: "Shipped") }
'''


def run_memory(order: dict[str, Any], rules: str = SHIP_RULES) -> tuple[Any, MemoryRunner]:
    engine = Engine.from_source(rules, stores=stores())
    result = engine.process(imported(order))
    runner = MemoryRunner(engine, builtin_handlers())
    runner.submit(result)
    runner.run()
    return result, runner


def test_a_copy_is_a_linked_order_in_the_other_store_and_its_shipment_comes_back():
    result, runner = run_memory(an_order("1001", "copy"))
    copy, original = runner.orders[OrderRef(SUPPLIER, "1001")], runner.orders[OrderRef(ACME, "1001")]
    assert copy["order_metadata"]["copied_from_store"] == ACME
    assert copy["order_metadata"]["copied_from_id"] == "1001"
    assert "copied_from_store" not in original["order_metadata"]
    # the supplier's rules ran on the copy: Imported, then Duplicated; its shipment went back
    seen = [(d.store, d.event) for d in result.decisions]
    assert seen.index((SUPPLIER, "Order is Imported")) < seen.index((SUPPLIER, "Order is Duplicated"))
    [passback] = [f for d in result.decisions for f in d.followups]
    assert passback.status == "scheduled" and passback.job.store == ACME and passback.job.order_id == "1001"
    assert tracking(copy) == ["1Z-1001"] and tracking(original) == ["1Z-1001"]
    assert original["folder"] == "Shipped" and copy["folder"] == "Shipped"
    assert [run.status for run in runner.runs if run.job.kind == "stores.passback"] == ["done"]


def test_a_moved_order_leaves_its_store_and_its_shipment_stays_where_it_is():
    result, runner = run_memory(an_order("1002", "move"))
    assert OrderRef(ACME, "1002") not in runner.orders
    assert OrderRef(ACME, "1002") in result.removed
    moved = runner.orders[OrderRef(SUPPLIER, "1002")]
    assert tracking(moved) == ["1Z-1002"] and moved["folder"] == "Shipped"
    assert moved["order_metadata"]["moved_from_store"] == ACME
    assert "copied_from_store" not in moved["order_metadata"]
    assert not [f for d in result.decisions for f in d.followups]
    assert not [run for run in runner.runs if run.job.kind == "stores.passback"]


def test_rules_after_a_move_do_not_run_on_the_order_in_its_old_store():
    rules = SHIP_RULES + '''
rule "Later rule" priority -1 { when "Order is Imported" if store.name == "Acme Prints" then "Tag Order"(name: "late") }
'''
    result, runner = run_memory(an_order("1003", "move"), rules)
    [first] = [d for d in result.decisions if d.store == ACME]
    assert first.fired == ["Move"]
    assert first.to_json(explain=True)["explain"][-1]["note"] == "not evaluated: the order moved to store 'Supplier'"
    assert runner.orders[OrderRef(SUPPLIER, "1003")].get("tag_name") is None


def test_a_moved_copy_no_longer_passes_shipments_back():
    rules = '''
rule "Copy" { when "Order is Imported" if store.name == "Acme Prints" then "Copy Order to Store"(store: "Supplier") }
rule "Move on" { when "Order is Duplicated" then "Move Order to Store"(store: "Third") }
rule "Ship it" { when "Order is Imported" if store.name == "Third"
                 then "Add Shipment"(tracking_number: "1Z-3", carrier_code: "UPS") }
'''
    engine = Engine.from_source(rules, stores=[*stores(), StoreSettings(name="Third")])
    result = engine.process(imported(an_order("1004")))
    runner = MemoryRunner(engine, builtin_handlers())
    runner.submit(result)
    runner.run()
    assert tracking(runner.orders[OrderRef("Third", "1004")]) == ["1Z-3"]
    assert tracking(runner.orders[OrderRef(ACME, "1004")]) == []
    assert OrderRef(SUPPLIER, "1004") not in runner.orders


@pytest.mark.parametrize("rule, error", [
    ('"Copy Order to Store"(store: "Acme Prints")', "in store 'Acme Prints' already"),
    ('"Move Order to Store"(store: "Acme Prints")', "in store 'Acme Prints' already"),
    ('"Copy Order to Store"(store: "Nowhere")', "unknown store 'Nowhere'"),
])
def test_copies_and_moves_that_cannot_be_are_failed_actions(rule, error):
    engine = Engine.from_source(f'rule "r" {{ when "Order is Imported" then {rule} }}', stores=stores())
    result = engine.process(imported(an_order("1005")))
    [record] = result.decisions[0].actions
    assert record.status == "failed" and error in record.error
    assert list(result.orders) == [OrderRef(ACME, "1005")] and not result.removed


def test_copying_a_copy_back_to_its_original_store_is_refused():
    rules = '''
rule "Copy" { when "Order is Imported" if store.name == "Acme Prints" then "Copy Order to Store"(store: "Supplier") }
rule "Back" { when "Order is Duplicated" then "Copy Order to Store"(store: "Acme Prints") }
'''
    engine = Engine.from_source(rules, stores=stores())
    result = engine.process(imported(an_order("1006")))
    [back] = [a for d in result.decisions for a in d.actions if a.rule == "Back"]
    assert back.status == "failed" and "would replace the original" in back.error
    assert result.orders[OrderRef(ACME, "1006")]["order_metadata"] == {"route": "copy"}


def test_a_shipment_the_original_has_already_is_not_added_twice():
    rules = '''
rule "Copy" { when "Order is Imported" if store.name == "Acme Prints" then "Copy Order to Store"(store: "Supplier") }
rule "Ship" { when "Order is Duplicated" then "Add Shipment"(tracking_number: "1Z-SAME", carrier_code: "UPS") }
rule "Count" { when "Shipment is Added" if store.name == "Acme Prints" then "Add Note"(text: "back") }
'''
    engine = Engine.from_source(rules, stores=stores())
    order = an_order("1007")
    order["order_shipments"] = [{"tracking_number": "1Z-SAME", "carrier_code": "UPS"}]
    result = engine.process(imported(order))
    runner = MemoryRunner(engine, builtin_handlers())
    runner.submit(result)
    runner.run()
    [run] = [r for r in runner.runs if r.job.kind == "stores.passback"]
    assert run.status == "done" and run.outcome.detail["passed_back"] is False
    assert tracking(runner.orders[OrderRef(ACME, "1007")]) == ["1Z-SAME"]
    assert "back" not in notes(runner.orders[OrderRef(ACME, "1007")])


def test_a_dry_run_records_the_passback_without_doing_it():
    engine = Engine.from_source(SHIP_RULES, stores=stores(), dry_run=True)
    result = engine.process(imported(an_order("1008")))
    [passback] = [f for d in result.decisions for f in d.followups]
    assert passback.status == "dry-run" and passback.params["shipment"]["tracking_number"] == "1Z-1008"
    assert tracking(result.orders[OrderRef(ACME, "1008")]) == []
    assert [d for d in result.decisions if d.followups][0].to_json()["followups"][0]["status"] == "dry-run"


# ---- the durable path: the daemon's worker and job runner, the copy shipped by podOS ----------------


class Durable:
    def __init__(self, store, sim: Simulator) -> None:
        self.store = store
        self.now = [T0]
        self.engine = Engine.from_source(RULES, stores=stores(sim.url), clock=self.clock, handoff=True)
        self.worker = Worker(store, lambda: self.engine, name="w", wall=lambda: self.now[0])
        self.runner = DurableRunner(store, lambda: self.engine, builtin_handlers(), name="r", clock=self.clock)

    def clock(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now[0], dt.timezone.utc)

    def import_order(self, order: dict[str, Any]) -> None:
        data = imported(order)
        self.store.enqueue([Inbound(data["id"], ACME, order["id"], "Order is Imported", json.dumps(data))],
                           self.now[0])

    def settle(self, horizon: float) -> None:
        settle(self.worker, self.runner, self.store, self.now, horizon, rounds=300)

    def order(self, store: str, order_id: str) -> dict[str, Any] | None:
        text = self.store.order(store, order_id)
        return None if text is None else json.loads(text)

    def events(self, store: str, order_id: str) -> list[str]:
        return [json.loads(text)["event"] for text in self.store.decisions(store, order_id)]


def test_durable_a_copy_shipped_by_podos_passes_its_shipment_back(backend_store, sim):
    d = Durable(backend_store, sim)
    d.import_order(an_order("2001", "copy"))
    d.settle(horizon=POLL - 1)
    copy = d.order(SUPPLIER, "2001")
    assert copy is not None and copy["folder"] == "Submitted"
    assert copy["order_metadata"]["copied_from_store"] == ACME
    assert "copy of 2001 from Acme Prints" in notes(copy)
    handed = [e for e in backend_store.events(store=SUPPLIER) if e.source == "rules"]
    assert sorted(e.name for e in handed) == ["Order is Duplicated", "Order is Imported"]
    [podos_order] = sim.orders()
    sim.ship(podos_order["id"], tracking_number="T-COPY")
    d.settle(horizon=POLL)
    copy, original = d.order(SUPPLIER, "2001"), d.order(ACME, "2001")
    assert tracking(copy) == ["T-COPY"] and tracking(original) == ["T-COPY"]
    assert original["folder"] == "Shipped"
    assert "shipped T-COPY in Acme Prints" in notes(original)
    assert d.events(ACME, "2001").count("Shipment is Added") == 1
    [passback] = [j for j in backend_store.jobs() if j.kind == "stores.passback"]
    assert passback.status == "done" and passback.store == ACME


def test_durable_a_moved_order_shipped_by_podos_passes_nothing_back(backend_store, sim):
    d = Durable(backend_store, sim)
    d.import_order(an_order("2002", "move"))
    d.settle(horizon=POLL - 1)
    assert d.order(ACME, "2002") is None
    moved = d.order(SUPPLIER, "2002")
    assert moved is not None and moved["folder"] == "Submitted"
    [podos_order] = sim.orders()
    sim.ship(podos_order["id"], tracking_number="T-MOVED")
    d.settle(horizon=POLL)
    assert tracking(d.order(SUPPLIER, "2002")) == ["T-MOVED"]
    assert d.order(ACME, "2002") is None
    assert not [j for j in backend_store.jobs() if j.kind == "stores.passback"]
    assert d.events(ACME, "2002") == ["Order is Imported"]


def test_a_copy_may_take_another_id_in_the_other_store():
    rules = '''
rule "Copy" { when "Order is Imported" if store.name == "Acme Prints"
              then "Copy Order to Store"(store: "Supplier", id: "ACME-{{ order.id }}") }
rule "Ship" { when "Order is Duplicated" then "Add Shipment"(tracking_number: "1Z-ID", carrier_code: "UPS") }
'''
    engine = Engine.from_source(rules, stores=stores())
    result = engine.process(imported(an_order("1009")))
    runner = MemoryRunner(engine, builtin_handlers())
    runner.submit(result)
    runner.run()
    copy = runner.orders[OrderRef(SUPPLIER, "ACME-1009")]
    assert copy["order_metadata"]["copied_from_id"] == "1009"
    assert OrderRef(SUPPLIER, "1009") not in runner.orders
    assert tracking(runner.orders[OrderRef(ACME, "1009")]) == ["1Z-ID"]


def test_a_memory_runner_refuses_a_result_whose_events_were_left_to_an_inbox():
    engine = Engine.from_source(SHIP_RULES, stores=stores(), handoff=True)
    result = engine.process(imported(an_order("1010")))
    assert [h.name for h in result.handoffs] == ["Order is Imported", "Order is Duplicated"]
    with pytest.raises(ValueError, match="without handoff=True"):
        MemoryRunner(engine, builtin_handlers()).submit(result)
