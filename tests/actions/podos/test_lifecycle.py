"""The podOS submission lifecycle end to end, over the real simulator on 127.0.0.1: "Submit Order to
podOS" -> "Before Order Submitted to podOS" (its rules edit what is sent) -> exactly one outcome event,
then shipments back by polling and by the daemon's callback.  Most cases run on MemoryRunner with a
virtual clock (job retries take no real time); the main flow, a retry and a duplicate also run on the
durable path (Worker + DurableRunner, SQLite and PostgreSQL), and the callback over `ruledesk serve`."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from ruledesk.actions import builtin_handlers
from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine import Engine
from ruledesk.engine.daemon.worker import Worker
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.jobs.durable import DurableRunner
from ruledesk.engine.model.jobs import Retry
from ruledesk.engine.model.settings import PodosSettings, StoreSettings
from ruledesk.engine.run.decision import OrderRef
from ruledesk.engine.store.base import Inbound
from support import Serve, VirtualTime, create_token, settle

TOKEN = "lifecycle-s3cret-token"
STORE = "Acme Prints"
PROJECT = "acme-prints"
SUBMIT_FOLDER = "Submitted to podOS"
SHIPPED_FOLDER = "Shipped"
POLL_INTERVAL = 60.0

AFTER = "After Order Submitted to podOS"
BEFORE = "Before Order Submitted to podOS"
INVALID_SKU = "Order Not Submitted to podOS Because of Invalid SKU"
GENERAL_ERROR = "Order Not Submitted to podOS Because of General Error"
NO_PRODUCTS = "Order Not Submitted to podOS Because No Products Available"
SCHEDULED = "Order Scheduled to podOS"
OUTCOMES = (AFTER, INVALID_SKU, GENERAL_ERROR, NO_PRODUCTS)

RULES = '''
rule "Submit" {
    when "Order is Imported"
    if order.folder == "New"
    then "Submit Order to podOS"
}
rule "Submit again" {
    when button "Submit again"
    then "Submit Order to podOS"
}
rule "Rush orders go overnight" {
    when "Before Order Submitted to podOS"
    if order.shipping_method == "Rush"
    then "Set Shipping Method"(method: "UPS Next Day Air")
}
rule "Late artwork" {
    when "Before Order Submitted to podOS"
    then
        for item in order.order_items where item.code == "TOTE-LATE" {
            "Set Item Metadata"(field: "podos_variant_id", value: "pv-41200")
        }
}
rule "Accepted" {
    when "After Order Submitted to podOS"
    then "Add Note"(text: "after {{ event.podos_order_id }}")
}
rule "Invalid" {
    when "Order Not Submitted to podOS Because of Invalid SKU"
    then "Add Note"(text: "invalid {{ event.skus | join(',') }}")
}
rule "Error" {
    when "Order Not Submitted to podOS Because of General Error"
    then "Add Note"(text: "error {{ event.error }}")
}
rule "Nothing" {
    when "Order Not Submitted to podOS Because No Products Available"
    then "Add Note"(text: "no products")
}
rule "Shipped" {
    when "Shipment is Added"
    then "Add Note"(text: "shipped {{ event.tracking_number }}")
}
'''


def podos_settings(url: str, **changes: Any) -> PodosSettings:
    fields = {"project": PROJECT, "token": SecretStr(TOKEN), "url": url, "retries": 0, "timeout": 5,
              "after_import_folder": SUBMIT_FOLDER, "after_shipment_folder": SHIPPED_FOLDER,
              "poll_interval": POLL_INTERVAL, "shipping_class_match": {"UPS Next Day Air": "Overnight"}}
    fields.update(changes)
    return PodosSettings(**fields)


def store_settings(url: str, **changes: Any) -> StoreSettings:
    return StoreSettings(name=STORE, id="10001", podos=podos_settings(url, **changes))


def an_order(order_id: str = "1001", *items: dict, **fields: Any) -> dict[str, Any]:
    if not items:
        items = (poster(),)
    data = {"id": order_id, "folder": "New", "email": "ada@example.com", "shipping_method": "USPS First Class",
            "shipping": {"first_name": "Ada", "last_name": "Lovelace", "address1": "1 Main St",
                         "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US"},
            "order_items": list(items), "order_notes": [], "order_shipments": [], "order_metadata": {}}
    data.update(fields)
    return data


def poster(id: str = "1", code: str = "POSTER-SUNRISE-18X24", variant: str = "pv-55012", quantity: str = "1"):
    return {"id": id, "name": code, "code": code, "quantity": quantity, "price": "19.50",
            "metadata": {"podos_variant_id": variant}, "variation_list": {}}


def tee(id: str, code: str, size: str, color: str = "Black"):
    return {"id": id, "name": code, "code": code, "quantity": "1", "price": "24.00",
            "metadata": {"podos_gfn_product_id": "gfn-prod-1180"}, "variation_list": {"Size": size, "Color": color}}


def stock(id: str = "9", code: str = "PIN-SET-3"):
    return {"id": id, "name": code, "code": code, "quantity": "1", "price": "4.00", "metadata": {},
            "variation_list": {}}


def imported(order: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"event": "Order is Imported", "order": order, "store": STORE, "id": event_id or f"imp-{order['id']}"}


@pytest.fixture
def sim():
    with Simulator(token=TOKEN, port=0) as simulator:
        yield simulator


# ---- MemoryRunner on a virtual clock --------------------------------------------------------------------


class Memory:
    """An engine with RULES and one podOS store, a MemoryRunner on a virtual clock, and every decision seen."""

    def __init__(self, sim: Simulator, **podos: Any) -> None:
        self.sim = sim
        self.clock = VirtualTime()
        self.engine = Engine.from_source(RULES, stores=[store_settings(sim.url, **podos)], clock=self.clock)
        self.runner = MemoryRunner(self.engine, builtin_handlers(), clock=self.clock, sleep=self.clock.sleep,
                                   max_wait=10 ** 6)
        self.decisions: list[Any] = []

    def take(self, result) -> None:
        self.decisions.extend(result.decisions)
        self.runner.submit(result)
        for later in self.runner.run():
            self.decisions.extend(later.decisions)

    def import_order(self, order: dict[str, Any]) -> None:
        self.take(self.engine.process(imported(order)))

    def press(self, label: str, order_id: str = "1001", event_id: str = "press-1") -> None:
        self.take(self.engine.press(label, self.order(order_id), store=STORE, event_id=event_id, dry_run=False))

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass and run the jobs due by then (status polls)."""
        self.clock.sleep(seconds)
        for later in self.runner.run():
            self.decisions.extend(later.decisions)

    def order(self, order_id: str = "1001") -> dict[str, Any]:
        return self.runner.orders[OrderRef(STORE, order_id)]

    def events(self) -> list[str]:
        return [d.event for d in self.decisions]

    def outcomes(self) -> list[str]:
        return [name for name in self.events() if name in OUTCOMES]

    def notes(self, order_id: str = "1001") -> list[str]:
        return [n["content"] for n in self.order(order_id).get("order_notes") or []]

    def runs(self, kind: str) -> list[Any]:
        return [run for run in self.runner.runs if run.job.kind == kind]


def posts(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["method"] == "POST" and r["path"] == "/v1/orders"]


def wait_for(condition, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_the_before_rules_edit_what_is_sent_and_after_moves_the_order(sim):
    m = Memory(sim)
    m.import_order(an_order("1001", poster(), stock("2", "TOTE-LATE"), stock("3", "GIFT-WRAP"),
                            shipping_method="Rush"))
    events = m.events()
    assert events.index(SCHEDULED) < events.index(BEFORE) < events.index(AFTER)
    assert m.outcomes() == [AFTER]
    [post] = posts(sim)
    body = post["body"]
    # what the Before rules left: the shipping method they set (matched to Overnight), the item they made a podOS item
    assert body["mail_class"] == "Overnight"
    assert [(i["line"], i["sku"], i.get("variant_id")) for i in body["items"]] == [
        ("1", "POSTER-SUNRISE-18X24", "pv-55012"), ("2", "TOTE-LATE", "pv-41200")]
    assert post["headers"].get("Idempotency-Key") or post["headers"].get("idempotency-key")
    [podos_order] = sim.orders()
    order = m.order()
    assert order["order_metadata"]["podos_order_id"] == podos_order["id"]
    assert order["folder"] == SUBMIT_FOLDER
    assert order["shipping_method"] == "UPS Next Day Air"
    assert f"after {podos_order['id']}" in m.notes()
    folder_changes = [d for d in m.decisions if d.event == "Folder is Changed"]
    assert len(folder_changes) == 1
    # the first status poll is scheduled poll_interval later
    [(due, _, poll_job, _)] = m.runner.later
    assert poll_job.kind == "podos.poll" and poll_job.params["podos_order_id"] == podos_order["id"]
    assert due == m.clock.now + dt.timedelta(seconds=POLL_INTERVAL)


def test_the_idempotency_key_is_the_submit_jobs_key(sim):
    m = Memory(sim)
    m.import_order(an_order())
    [submit] = m.runs("podos.submit")
    [post] = posts(sim)
    headers = {k.lower(): v for k, v in post["headers"].items()}
    assert headers["idempotency-key"] == submit.job.key
    assert headers["x-podos-project"] == PROJECT
    assert TOKEN not in json.dumps(post)


def test_invalid_sku_from_local_resolution_sends_nothing(sim):
    m = Memory(sim)
    m.import_order(an_order("1001", poster(), tee("2", "TEE-XXXL", "XXXL"), tee("3", "TEE-M", "M")))
    assert m.outcomes() == [INVALID_SKU]
    assert posts(sim) == [] and sim.orders() == []
    assert "invalid TEE-XXXL" in m.notes()
    assert "podos_order_id" not in (m.order().get("order_metadata") or {})
    assert m.order()["folder"] == "New"


def test_an_ambiguous_variant_is_an_invalid_sku_and_nothing_is_sent(sim):
    m = Memory(sim)
    m.import_order(an_order("1001", {"id": "1", "code": "TEE-5000-M", "name": "t", "quantity": "1",
                                     "metadata": {"podos_gfn_product_id": "gfn-prod-4040"},
                                     "variation_list": {"Size": "M", "Color": "Black"}}))
    assert m.outcomes() == [INVALID_SKU] and posts(sim) == []
    assert "invalid TEE-5000-M" in m.notes()


def test_invalid_sku_from_podos_for_an_unknown_design(sim):
    m = Memory(sim)
    m.import_order(an_order("1001", poster(), poster("2", "POSTER-GHOST", "pv-90001")))
    assert m.outcomes() == [INVALID_SKU]
    assert len(posts(sim)) == 1 and sim.orders() == []  # sent once (a 422 is not retried), nothing created
    assert "invalid POSTER-GHOST" in m.notes()
    assert len(m.runs("podos.send")) == 1


def test_invalid_sku_from_podos_for_a_rejected_sku(sim):
    sim.reject_skus(["POSTER-SUNRISE-18X24"])
    m = Memory(sim)
    m.import_order(an_order())
    assert m.outcomes() == [INVALID_SKU] and sim.orders() == []
    assert "invalid POSTER-SUNRISE-18X24" in m.notes()


def test_no_products_available_sends_nothing(sim):
    m = Memory(sim)
    m.import_order(an_order("1001", stock("1", "PIN-SET-3"), stock("2", "GIFT-WRAP")))
    assert m.outcomes() == [NO_PRODUCTS]
    assert posts(sim) == [] and "no products" in m.notes()
    assert m.order()["folder"] == "New"


def test_only_skipped_items_is_no_products_available(sim):
    m = Memory(sim, product_code_skip=["POSTER-SUNRISE-18X24"])
    m.import_order(an_order())
    assert m.outcomes() == [NO_PRODUCTS] and posts(sim) == []


def test_product_code_match_sends_the_bundle_and_leaves_the_order_alone(sim):
    m = Memory(sim, product_code_match="GIFT-SET=MUG-11-WHITE,STK-HOLO-3IN")
    gift = stock("1", "GIFT-SET") | {"quantity": "2"}
    m.import_order(an_order("1001", gift))
    assert m.outcomes() == [AFTER]
    [stored] = sim.orders()
    assert [(i["sku"], i["quantity"], i.get("variant_id"), i.get("gfn_variant_id")) for i in stored["items"]] == [
        ("MUG-11-WHITE", 2, None, "gfn-var-30071"), ("STK-HOLO-3IN", 2, "pv-10442", None)]
    assert [i["code"] for i in m.order()["order_items"]] == ["GIFT-SET"]



def test_a_matched_item_with_quantity_zero_does_not_sink_the_order(sim):
    """A matched item with quantity 0 is left out and the rest is submitted (as a resolved item with
    quantity 0 is); sent, podOS would refuse the whole order with 400 and the order get General Error."""
    m = Memory(sim, product_code_match="GIFT-SET=MUG-11-WHITE")
    m.import_order(an_order("1001", poster(), stock("2", "GIFT-SET") | {"quantity": "0"}))
    assert m.outcomes() == [AFTER], m.notes()
    [stored] = sim.orders()
    assert [i["sku"] for i in stored["items"]] == ["POSTER-SUNRISE-18X24"]

@pytest.mark.parametrize("status", [400, 403])
def test_a_refusal_is_a_general_error_at_once(sim, status):
    sim.add_fault(status=status, method="POST", path="/v1/orders")
    m = Memory(sim)
    m.import_order(an_order())
    assert m.outcomes() == [GENERAL_ERROR]
    assert len(m.runs("podos.send")) == 1 and len(posts(sim)) == 1
    [note] = [n for n in m.notes() if n.startswith("error ")]
    assert f"HTTP {status}" in note and TOKEN not in note
    assert m.order()["folder"] == "New"


def test_a_wrong_token_is_a_general_error_at_once_without_the_token(sim):
    wrong = "wrong-token-never-shown-42"
    m = Memory(sim, token=SecretStr(wrong))
    m.import_order(an_order())
    assert m.outcomes() == [GENERAL_ERROR] and len(m.runs("podos.send")) == 1
    [note] = [n for n in m.notes() if n.startswith("error ")]
    assert "401" in note and wrong not in note and TOKEN not in note
    detail = json.dumps([str(r.outcome) for r in m.runner.runs])
    assert wrong not in detail


def test_a_503_outage_is_a_general_error_after_the_jobs_attempts(sim):
    sim.add_fault(status=503, method="POST", path="/v1/orders")
    m = Memory(sim)
    m.import_order(an_order())
    sends = m.runs("podos.send")
    assert [run.status for run in sends] == ["retry"] * 4 + ["failed"]
    assert len(posts(sim)) == 5 and sim.orders() == []
    assert m.outcomes() == [GENERAL_ERROR]
    [note] = [n for n in m.notes() if n.startswith("error ")]
    assert "503" in note and "after 5 attempts" in note and TOKEN not in note


def test_503_twice_then_success_retries_with_backoff_into_one_order(sim):
    sim.add_fault(status=503, times=2, method="POST", path="/v1/orders")
    m = Memory(sim)
    m.import_order(an_order())
    sends = m.runs("podos.send")
    assert [run.status for run in sends] == ["retry", "retry", "done"]
    for number, run in enumerate(sends[:2], 1):  # full-jitter backoff: within base * 2**(attempt-1) seconds
        assert isinstance(run.outcome, Retry)
        assert run.at <= run.outcome.at <= run.at + dt.timedelta(seconds=2.0 * 2 ** (number - 1))
    assert m.outcomes() == [AFTER]
    [stored] = sim.orders()
    assert stored["submissions"] == 1 and len(posts(sim)) == 3
    keys = {r["headers"].get("Idempotency-Key") for r in posts(sim)}
    assert len(keys) == 1  # every attempt carries the same key


def test_the_clients_own_retries_with_backoff_make_one_order(sim):
    sim.add_fault(status=503, times=2, method="POST", path="/v1/orders")
    m = Memory(sim, retries=2)
    m.import_order(an_order())
    assert [run.status for run in m.runs("podos.send")] == ["done"]
    assert len(posts(sim)) == 3 and [o["submissions"] for o in sim.orders()] == [1]
    assert m.outcomes() == [AFTER]


def test_429_retry_after_is_honoured(sim):
    sim.add_fault(status=429, times=1, method="POST", path="/v1/orders", retry_after=45)
    m = Memory(sim)
    m.import_order(an_order())
    first, second = m.runs("podos.send")
    assert first.status == "retry" and second.status == "done"
    assert first.outcome.at - first.at >= dt.timedelta(seconds=45)
    assert second.at >= first.at + dt.timedelta(seconds=45)
    assert m.outcomes() == [AFTER] and len(sim.orders()) == 1


def test_a_503_with_retry_after_waits_at_least_that_long(sim):
    sim.add_fault(status=503, times=1, method="POST", path="/v1/orders", retry_after=120)
    m = Memory(sim)
    m.import_order(an_order())
    first = m.runs("podos.send")[0]
    assert first.status == "retry" and first.outcome.at - first.at >= dt.timedelta(seconds=120)
    assert m.outcomes() == [AFTER]


def test_a_timeout_then_a_retry_is_one_podos_order_with_two_submissions(sim):
    sim.add_fault(latency=1.5, times=1, method="POST", path="/v1/orders")
    m = Memory(sim, timeout=0.5)
    m.import_order(an_order())
    assert [run.status for run in m.runs("podos.send")] == ["retry", "done"]
    assert m.outcomes() == [AFTER]
    # the first POST is still answered by podOS once its latency is over: a duplicate of the same key
    stored = wait_for(lambda: [o for o in sim.orders() if o["submissions"] == 2], 10, "the late first POST")
    assert len(sim.orders()) == 1 and stored[0]["id"] == m.order()["order_metadata"]["podos_order_id"]


def test_submitting_an_order_podos_already_has_gives_after_again_with_the_same_id(sim):
    m = Memory(sim)
    m.import_order(an_order())
    podos_id = m.order()["order_metadata"]["podos_order_id"]
    m.press("Submit again")
    assert m.outcomes() == [AFTER, AFTER]
    assert m.notes().count(f"after {podos_id}") == 2
    [stored] = sim.orders()
    assert stored["submissions"] == 2 and stored["id"] == podos_id
    assert m.order()["folder"] == SUBMIT_FOLDER
    assert [d.event for d in m.decisions].count("Folder is Changed") == 1  # already there: not moved again
    sends = m.runs("podos.send")
    assert len(sends) == 2 and sends[0].job.key != sends[1].job.key
    assert [run.outcome.detail.get("created") for run in sends] == [True, False]


def test_a_shipment_comes_back_by_polling(sim):
    m = Memory(sim)
    m.import_order(an_order())
    podos_id = m.order()["order_metadata"]["podos_order_id"]
    m.advance(POLL_INTERVAL)  # not shipped yet: the next poll is scheduled
    assert m.runs("podos.poll")[-1].outcome.detail["status"] == "received"
    assert len(m.runner.later) == 1 and "Shipment is Added" not in m.events()
    sim.ship(podos_id, tracking_number="9400111111111111111111", carrier="USPS")
    m.advance(POLL_INTERVAL)
    assert m.events().count("Shipment is Added") == 1
    order = m.order()
    assert [s["tracking_number"] for s in order["order_shipments"]] == ["9400111111111111111111"]
    assert order["order_shipments"][0]["carrier_code"] == "USPS"
    assert order["folder"] == SHIPPED_FOLDER
    assert "shipped 9400111111111111111111" in m.notes()
    assert m.runner.later == []  # shipped: polling stops
    m.advance(POLL_INTERVAL * 10)
    assert len(m.runs("podos.poll")) == 2


def test_a_second_shipment_is_added_and_a_known_one_is_not(sim):
    m = Memory(sim)
    m.import_order(an_order())
    podos_id = m.order()["order_metadata"]["podos_order_id"]
    sim.ship(podos_id, tracking_number="T-1")
    m.press("Submit again")  # a second chain of polls over the same shipment
    m.advance(POLL_INTERVAL)
    assert m.events().count("Shipment is Added") == 1
    assert [s["tracking_number"] for s in m.order()["order_shipments"]] == ["T-1"]
    assert m.notes().count("shipped T-1") == 1


def test_poll_errors_keep_polling(sim):
    m = Memory(sim)
    m.import_order(an_order())
    sim.add_fault(status=503, method="GET", path="/v1/orders/")
    m.advance(POLL_INTERVAL)
    polls = m.runs("podos.poll")
    assert polls and polls[-1].status == "done" and "error" in polls[-1].outcome.detail
    assert len(m.runner.later) == 1  # polls go on at the usual pace
    sim.clear_faults()
    sim.ship(m.order()["order_metadata"]["podos_order_id"], tracking_number="T-9")
    m.advance(POLL_INTERVAL)
    assert m.events().count("Shipment is Added") == 1 and m.order()["folder"] == SHIPPED_FOLDER


# ---- the durable path: Worker + DurableRunner on SQLite and PostgreSQL ----------------------------------

T0 = 1_800_000_000.0


class Durable:
    def __init__(self, store, sim: Simulator, **podos: Any) -> None:
        self.store = store
        self.now = [T0]
        self.engine = Engine.from_source(RULES, stores=[store_settings(sim.url, **podos)], clock=self.clock)
        self.worker = Worker(store, lambda: self.engine, name="w", wall=lambda: self.now[0])
        self.attempts: list[Any] = []
        self.runner = DurableRunner(store, lambda: self.engine, builtin_handlers(), name="r", clock=self.clock,
                                    on_attempt=self.attempts.append)

    def clock(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now[0], dt.timezone.utc)

    def import_order(self, order: dict[str, Any]) -> None:
        data = imported(order)
        self.store.enqueue([Inbound(data["id"], STORE, order["id"], "Order is Imported", json.dumps(data))],
                           self.now[0])

    def settle(self, horizon: float = 3600.0) -> None:
        """Run events and due jobs until nothing is left due within ``horizon`` seconds (time jumps to each due job)."""
        settle(self.worker, self.runner, self.store, self.now, horizon, rounds=200)

    def order(self, order_id: str = "1001") -> dict[str, Any]:
        return json.loads(self.store.order(STORE, order_id))

    def decisions(self, order_id: str = "1001") -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.store.decisions(STORE, order_id)]

    def events(self) -> list[str]:
        return [d["event"] for d in self.decisions()]

    def jobs(self, kind: str) -> list[Any]:
        return [j for j in self.store.jobs() if j.kind == kind]


def test_durable_main_flow(backend_store, sim):
    d = Durable(backend_store, sim)
    d.import_order(an_order("1001", poster(), stock("2", "TOTE-LATE"), shipping_method="Rush"))
    d.settle(horizon=POLL_INTERVAL - 1)  # the submission, not the first poll
    events = d.events()
    assert events.index(SCHEDULED) < events.index(BEFORE) < events.index(AFTER)
    assert [e for e in events if e in OUTCOMES] == [AFTER]
    [post] = posts(sim)
    assert post["body"]["mail_class"] == "Overnight"
    assert [i["sku"] for i in post["body"]["items"]] == ["POSTER-SUNRISE-18X24", "TOTE-LATE"]
    [stored] = sim.orders()
    order = d.order()
    assert order["order_metadata"]["podos_order_id"] == stored["id"]
    assert order["folder"] == SUBMIT_FOLDER
    assert backend_store.orders_in_folder(STORE, SUBMIT_FOLDER) == ["1001"]
    assert f"after {stored['id']}" in [n["content"] for n in order["order_notes"]]
    [submit] = d.jobs("podos.submit")
    [send] = d.jobs("podos.send")
    assert send.key == f"{submit.key}.send" and send.status == "done"
    assert {k.lower(): v for k, v in post["headers"].items()}["idempotency-key"] == submit.key
    [poll] = d.jobs("podos.poll")
    assert poll.status == "pending" and poll.due_at == pytest.approx(T0 + POLL_INTERVAL)
    # then it ships and the poll brings the shipment back
    sim.ship(stored["id"], tracking_number="T-DURABLE")
    d.settle(horizon=POLL_INTERVAL)
    order = d.order()
    assert [s["tracking_number"] for s in order["order_shipments"]] == ["T-DURABLE"]
    assert order["folder"] == SHIPPED_FOLDER
    assert d.events().count("Shipment is Added") == 1
    assert [j.status for j in d.jobs("podos.poll")] == ["done"]


def test_durable_retry_after_503s_is_one_order(backend_store, sim):
    sim.add_fault(status=503, times=2, method="POST", path="/v1/orders")
    d = Durable(backend_store, sim)
    d.import_order(an_order())
    d.settle(horizon=POLL_INTERVAL - 1)
    [send] = d.jobs("podos.send")
    assert (send.status, send.attempts) == ("done", 3)
    assert [a.status for a in d.attempts if a.job.kind == "podos.send"] == ["retry", "retry", "done"]
    [stored] = sim.orders()
    assert stored["submissions"] == 1 and len(posts(sim)) == 3
    assert [e for e in d.events() if e in OUTCOMES] == [AFTER]
    assert d.order()["order_metadata"]["podos_order_id"] == stored["id"]


def test_durable_503_outage_is_a_general_error_after_the_attempts(backend_store, sim):
    sim.add_fault(status=503, method="POST", path="/v1/orders")
    d = Durable(backend_store, sim)
    d.import_order(an_order())
    d.settle()
    [send] = d.jobs("podos.send")
    assert (send.status, send.attempts) == ("failed", 5)
    assert [e for e in d.events() if e in OUTCOMES] == [GENERAL_ERROR]
    assert len(posts(sim)) == 5 and sim.orders() == []
    notes = [n["content"] for n in d.order()["order_notes"]]
    assert any(n.startswith("error ") and "503" in n and TOKEN not in n for n in notes), notes


def test_durable_duplicate_after_a_timeout_is_one_order(backend_store, sim):
    sim.add_fault(latency=1.5, times=1, method="POST", path="/v1/orders")
    d = Durable(backend_store, sim, timeout=0.5)
    d.import_order(an_order())
    d.settle(horizon=POLL_INTERVAL - 1)
    [send] = d.jobs("podos.send")
    assert (send.status, send.attempts) == ("done", 2)
    stored = wait_for(lambda: [o for o in sim.orders() if o["submissions"] == 2], 10, "the late first POST")
    assert len(sim.orders()) == 1
    assert d.order()["order_metadata"]["podos_order_id"] == stored[0]["id"]
    assert [e for e in d.events() if e in OUTCOMES] == [AFTER]


def test_durable_second_submission_is_harmless(backend_store, sim):
    d = Durable(backend_store, sim)
    d.import_order(an_order())
    d.settle(horizon=POLL_INTERVAL - 1)
    podos_id = d.order()["order_metadata"]["podos_order_id"]
    body = {"button": "Submit again", "order_id": "1001", "store": STORE, "id": "press-1"}
    backend_store.enqueue([Inbound("press-1", STORE, "1001", "Submit again", json.dumps(body), kind="button")],
                          d.now[0])
    d.settle(horizon=POLL_INTERVAL - 1)
    assert [e for e in d.events() if e in OUTCOMES] == [AFTER, AFTER]
    notes = [n["content"] for n in d.order()["order_notes"]]
    assert notes.count(f"after {podos_id}") == 2
    assert [o["submissions"] for o in sim.orders()] == [2]


# ---- the callback over `ruledesk serve` ------------------------------------------------------------------


def sign(body: bytes, token: str = TOKEN) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def test_shipments_come_back_by_callback_and_polling_once_each_over_serve(tmp_path):
    """`ruledesk serve --podos-simulator`: the simulator ships each order a second after it is submitted
    and calls the daemon back; the daemon also polls every second.  The shipment arrives by both and is
    added once; the same callback again is a duplicate; a callback with a new shipment adds just that one."""
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    (tmp_path / "ruledesk.yaml").write_text(
        "stores:\n"
        f"  - name: {STORE}\n    id: '10001'\n    podos:\n      project: {PROJECT}\n"
        f"      token: file:{tmp_path / 'token'}\n      url: http://127.0.0.1:9\n      retries: 0\n"
        f"      after_import_folder: {SUBMIT_FOLDER}\n      after_shipment_folder: {SHIPPED_FOLDER}\n"
        "      poll_interval: 1\n", encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "podos.rules").write_text(RULES, encoding="utf-8")
    db = f"sqlite:///{tmp_path}/serve.db"
    serve = Serve(tmp_path, db, rules, "--config", str(tmp_path / "ruledesk.yaml"), "--podos-simulator").start()
    try:
        found = re.search(r"podOS simulator on (http://\S+)", serve.stderr())
        assert found, serve.stderr()
        sim_url = found.group(1)
        token = create_token(db, store=STORE, cwd=tmp_path)
        auth = {"Authorization": f"Bearer {token}"}
        answer = httpx.post(f"{serve.url}/v1/events", json=imported(an_order("2001")), headers=auth, timeout=10)
        assert answer.status_code == 202, answer.text

        def order() -> dict[str, Any] | None:
            got = httpx.get(f"{serve.url}/v1/orders/2001", headers=auth, timeout=10)
            return got.json() if got.status_code == 200 else None

        def shipped() -> dict[str, Any] | None:
            current = order()
            return current if current and current.get("order_shipments") and current["folder"] == SHIPPED_FOLDER \
                else None

        current = wait_for(shipped, 30, "the shipment to come back")
        [shipment] = current["order_shipments"]
        number = shipment["tracking_number"]
        sim_auth = {"Authorization": f"Bearer {TOKEN}"}
        [podos_order] = httpx.get(f"{sim_url}/_sim/orders", headers=sim_auth, timeout=10).json()["orders"]
        assert current["order_metadata"]["podos_order_id"] == podos_order["id"]

        # both paths have seen the shipment: a poll found the order shipped, and the callback job ran
        def both_seen() -> bool:
            with_polls = [r for r in httpx.get(f"{sim_url}/_sim/requests", headers=sim_auth, timeout=10)
                          .json()["requests"] if r["method"] == "GET" and r["path"] == f"/v1/orders/{podos_order['id']}"
                          and r["received_at"] > podos_order["shipments"][0]["shipped_at"]]
            return bool(with_polls)

        wait_for(both_seen, 10, "a poll after the order shipped")
        time.sleep(0.5)  # the poll's job commits
        # the same callback again (as podOS would retry it): a duplicate, nothing added
        body = json.dumps({"event": "order.shipped", "order": podos_order}).encode()
        again = httpx.post(f"{serve.url}/v1/callbacks/podos/{STORE.replace(' ', '%20')}", content=body,
                           headers={"Content-Type": "application/json", "X-Podos-Signature": sign(body),
                                    "X-Podos-Project": PROJECT}, timeout=10)
        assert again.status_code == 202, again.text
        assert again.json()["jobs"] and again.json()["duplicates"] == again.json()["jobs"], again.text
        # a callback carrying the known shipment and a new one adds only the new one
        second = {**podos_order, "shipments": podos_order["shipments"] + [
            {"tracking_number": "T-SECOND", "carrier": "UPS", "method": "Ground", "shipped_at": "2026-12-02T13:00:00Z"}]}
        body2 = json.dumps({"event": "order.shipped", "order": second}).encode()
        more = httpx.post(f"{serve.url}/v1/callbacks/podos/{STORE.replace(' ', '%20')}", content=body2,
                          headers={"Content-Type": "application/json", "X-Podos-Signature": sign(body2),
                                   "X-Podos-Project": PROJECT}, timeout=10)
        assert more.status_code == 202 and more.json()["duplicates"] == [], more.text
        current = wait_for(lambda: (o := order()) and len(o["order_shipments"]) == 2 and o, 15, "the second shipment")
        assert [s["tracking_number"] for s in current["order_shipments"]] == [number, "T-SECOND"]
        time.sleep(0.5)
        decisions = httpx.get(f"{serve.url}/v1/decisions", params={"order_id": "2001"}, headers=auth,
                              timeout=10).json()
        added = [d for d in decisions if d["event"] == "Shipment is Added"]
        assert len(added) == 2, [d["event"] for d in decisions]
        notes = [n["content"] for n in order()["order_notes"]]
        assert notes.count(f"shipped {number}") == 1 and notes.count("shipped T-SECOND") == 1
        assert TOKEN not in json.dumps(decisions)
    finally:
        serve.stop()
    assert not [line for line in serve.lines if TOKEN in line]


def test_an_order_changed_between_attempts_is_still_taken_as_submitted(sim):
    """The first attempt got through (podOS has the order under the key), then the order changed
    before the retry: the same Idempotency-Key with another body is a 409 at podOS; the send finds
    podOS's order for it and ends as submitted (one podOS order), not as a General Error."""
    from pydantic import SecretStr

    from ruledesk.actions.podos import handlers
    from ruledesk.actions.podos.client import PodosClient
    from ruledesk.engine.model.jobs import Done, Job, JobContext
    from ruledesk.engine.model.order import parse_order
    from ruledesk.engine.model.settings import PodosSettings, StoreSettings

    store = StoreSettings(name="acme", podos=PodosSettings(project="p", token=SecretStr(TOKEN),
                                                           url=sim.url, retries=0))
    order = parse_order({"id": "7001", "shipping_method": "Ground", "order_items": [
        {"id": "1", "code": "POSTER-SUNRISE-18X24", "quantity": 1, "metadata": {"podos_variant_id": "pv-55012"}}]})
    job = Job(handlers.SEND, "job-409.send", "Submit Order to podOS", "r", "ev", "7001", "acme",
              {"idempotency_key": "job-409"})
    with PodosClient.from_settings(store.podos) as client:
        ctx = JobContext(order, store, {"podos": lambda s: client}, lambda: dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc))
        first = handlers.send(job, ctx)
        order["shipping_method"] = "Overnight"  # changed before the retry: another body, the same key
        again = handlers.send(job, JobContext(order, store, {"podos": lambda s: client}, lambda: dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)))
    assert isinstance(first, Done) and isinstance(again, Done), again
    assert again.detail["podos_order_id"] == first.detail["podos_order_id"] and again.detail["created"] is False
    assert [o["order_desk_order_id"] for o in sim.orders()] == ["7001"]
    assert sim.requests()[-2]["path"] == "/v1/orders" and sim.requests()[-1]["path"].startswith("/v1/orders")
