"""The worker on both store backends: stored events run through a real engine, their effects
(order state, decisions, jobs, done marks) commit together, a failing event is retried then set
aside without holding its order's stream, and nothing of an order is committed out of order."""

from __future__ import annotations

import json

import pytest

from ruledesk.engine import Engine
from ruledesk.engine.daemon.worker import Worker
from ruledesk.engine.store.base import Inbound
from support import ping_engine

T0 = 1_800_000_000.0

RULES = '''
rule "Route" {
    when "Order is Imported"
    then "Move to Folder"(folder: "Review")
}
rule "Tag" {
    when "Order is Imported"
    then "Tag Order"(name: "seen {{ order.email }}")
}
rule "Announce" {
    when "Order is Imported"
    then "Ping"(target: "hook {{ order.id }}")
}
rule "Noted" {
    when "Note Added"
    if order.folder == "Review"
    then
        "Set Order Metadata"(field: "noted", value: "{{ event.note }}")
        "Ping"(target: "note {{ order.id }}")
}
'''


def make_engine(rules: str = RULES) -> Engine:
    return ping_engine(rules)


@pytest.fixture
def store(backend_store):
    return backend_store


def imported(id, order_id="42", **fields):
    order = {"id": order_id, "email": "a@example.com", **fields}
    return Inbound(id, "default", order_id, "Order is Imported",
                   json.dumps({"event": "Order is Imported", "order": order, "store": "default", "id": id}))


def note(id, order_id="42", text="hello", **fields):
    body = {"event": "Note Added", "order": {"id": order_id, "email": "other@example.com", **fields},
            "payload": {"note": text}, "store": "default", "id": id}
    return Inbound(id, "default", order_id, "Note Added", json.dumps(body))


def worker_for(store, engine, **options):
    now = [T0]
    handled = []
    worker = Worker(store, lambda: engine, name="w", wall=lambda: now[0], on_handled=handled.extend, **options)
    worker.now, worker.handled = now, handled
    return worker


def drain(worker):
    total = 0
    while (n := worker.run_once()):
        total += n
    return total


def test_processing_writes_the_order_decisions_jobs_and_ruleset(store):
    engine = make_engine()
    worker = worker_for(store, engine)
    store.enqueue([imported("e1")], T0)
    assert worker.run_once() == 1
    assert worker.run_once() == 0
    order = json.loads(store.order("default", "42"))
    assert (order["folder"], order["tag_name"], order["email"]) == ("Review", "seen a@example.com", "a@example.com")
    assert store.orders_in_folder("default", "Review") == ["42"]
    event = store.event("e1")
    assert (event.status, event.attempts, event.ruleset, event.processed_at) == (
        "done", 1, engine.ruleset.version, T0)
    decisions = [json.loads(text) for text in store.decisions_of("e1")]
    assert [d["event"] for d in decisions] == ["Order is Imported", "Folder is Changed"]
    assert decisions[0]["fired"] == ["Route", "Tag", "Announce"]
    assert [entry[:2] for entry in decisions[0]["why"]][:3] == [["Route", 1], ["Tag", 1], ["Announce", 1]]
    assert store.decisions("default", "42") == store.decisions_of("e1")
    expected = engine.process(json.loads(imported("e1").body)).jobs
    [job] = store.jobs()
    assert (job.key, job.kind, job.order_id, job.event_id, job.status, job.hops) == (
        expected[0].key, "ping", "42", "e1", "pending", 0)
    assert json.loads(job.body)["params"] == {"target": "hook 42"}
    assert [h.event.id for h in worker.handled] == ["e1"] and worker.handled[0].error is None


def test_a_later_event_runs_on_the_stored_order_not_its_own(store):
    worker = worker_for(store, make_engine())
    store.enqueue([imported("e1")], T0)
    worker.run_once()
    store.enqueue([note("e2", text="first note")], T0)
    assert worker.run_once() == 1
    order = json.loads(store.order("default", "42"))
    # the note's own order (another email, no folder) was not used: the stored one was
    assert order["email"] == "a@example.com" and order["folder"] == "Review"
    assert order["order_metadata"] == {"noted": "first note"}
    assert json.loads(store.decisions_of("e2")[0])["fired"] == ["Noted"]
    assert len(store.jobs()) == 2


def test_order_is_imported_replaces_the_stored_order(store):
    worker = worker_for(store, make_engine())
    store.enqueue([imported("e1"), note("e2")], T0)
    assert worker.run_once() == 2
    assert "order_metadata" in json.loads(store.order("default", "42"))
    store.enqueue([imported("e3", email="b@example.com")], T0)
    worker.run_once()
    order = json.loads(store.order("default", "42"))
    assert order["email"] == "b@example.com" and order["tag_name"] == "seen b@example.com"
    assert not order.get("order_metadata")


def test_several_events_of_one_order_in_one_claim_run_in_sequence(store):
    worker = worker_for(store, make_engine())
    store.enqueue([imported("e1"), note("e2", text="one"), note("e3", text="two"), imported("f1", "43")], T0)
    assert worker.run_once() == 4
    assert json.loads(store.order("default", "42"))["order_metadata"] == {"noted": "two"}
    assert json.loads(store.order("default", "43"))["folder"] == "Review"
    assert [h.event.id for h in worker.handled] == ["e1", "e2", "e3", "f1"]
    assert store.counts() == {"events_done": 4, "jobs_pending": 4}


def raising_on(engine, *event_ids):
    real = engine.process

    def process(event, **options):
        if event.id in event_ids:
            raise RuntimeError(f"engine broke on {event.id}")
        return real(event, **options)

    engine.process = process
    return real


def test_a_failing_event_is_retried_then_set_aside_and_its_order_goes_on(store):
    engine = make_engine()
    worker = worker_for(store, engine, max_attempts=3)
    store.enqueue([imported("e1"), note("e2")], T0)
    raising_on(engine, "e1")
    for attempt in (1, 2, 3):
        assert worker.run_once() == 1
        e1, e2 = store.event("e1"), store.event("e2")
        assert (e1.attempts, e1.error) == (attempt, "RuntimeError: engine broke on e1")
        assert e2.status == "pending" and e2.attempts == 0  # it waits for its order's failed event
        assert worker.handled[-1].error == "RuntimeError: engine broke on e1"
    assert store.event("e1").status == "poison"
    assert worker.run_once() == 1
    assert store.event("e2").status == "done"
    assert store.decisions_of("e1") == []
    assert json.loads(store.decisions_of("e2")[0])["fired"] == []  # no stored order: the note's own order


def test_an_event_the_engine_refuses_is_poison(store):
    worker = worker_for(store, make_engine(), max_attempts=1)
    body = json.dumps({"event": "No Such Event", "order": {"id": "42"}, "store": "default", "id": "bad"})
    store.enqueue([Inbound("bad", "default", "42", "No Such Event", body), imported("e1")], T0)
    assert worker.run_once() == 1
    bad = store.event("bad")
    assert bad.status == "poison" and "unknown event" in bad.error
    assert worker.run_once() == 1 and store.event("e1").status == "done"


def test_earlier_events_of_an_order_are_not_committed_when_a_later_one_raises(store):
    engine = make_engine()
    worker = worker_for(store, engine)
    store.enqueue([imported("e1"), imported("f1", "43"), note("e2")], T0)
    real = raising_on(engine, "e2")
    assert worker.run_once() == 2  # f1 done, e2 failed; e1 runs again with it
    assert store.event("e1").status == "pending" and store.event("e1").attempts == 0
    assert store.event("e2").attempts == 1
    assert store.event("f1").status == "done"
    assert store.order("default", "42") is None and store.decisions("default", "42") == []
    assert [j.order_id for j in store.jobs()] == ["43"]
    engine.process = real
    assert worker.run_once() == 2
    assert [(e.id, e.status) for e in store.events(order_id="42")] == [("e1", "done"), ("e2", "done")]
    assert [json.loads(d)["event"] for d in store.decisions("default", "42")] == [
        "Order is Imported", "Folder is Changed", "Note Added"]
    keys = {j.event_id: j.key for j in store.jobs(order_id="42")}
    direct = make_engine().process(json.loads(imported("e1").body)).jobs
    assert keys["e1"] == direct[0].key and set(keys) == {"e1", "e2"}


def test_reprocessing_the_same_event_keeps_one_job(store):
    """An event run again (a crash after its jobs were committed, a requeue) yields the same job keys."""
    engine = make_engine()
    worker = worker_for(store, engine)
    store.enqueue([imported("e1")], T0)
    worker.run_once()
    with store._transaction() as tx:
        tx.run("UPDATE events SET status = 'pending' WHERE id = 'e1'")
    worker.run_once()
    assert len(store.jobs()) == 1 and store.event("e1").attempts == 2


def test_a_worker_that_loses_its_lease_commits_nothing(store):
    from ruledesk.engine.store.sql import LeaseLost

    engine = make_engine()
    slow = worker_for(store, engine, lease=10)
    real = engine.process

    def process(event, **options):  # meanwhile, the lease ends and another worker takes the order
        slow.now[0] = T0 + 20
        assert store.claim("thief", T0 + 20, 10) is not None
        return real(event, **options)

    engine.process = process
    store.enqueue([imported("e1")], T0)
    with pytest.raises(LeaseLost):
        slow.run_once()
    assert store.event("e1").status == "pending" and store.order("default", "42") is None
    assert store.jobs() == [] and store.decisions_of("e1") == []
