"""The durable job runner on both store backends: the jobs the worker committed run once each,
their outcome (done, retry, failed) is recorded, and the events handlers emit enter the inbox
with ids derived from the job key and run through the rules like any event."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ruledesk.engine import Engine
from ruledesk.engine.daemon.worker import Worker
from ruledesk.engine.jobs.durable import DurableRunner
from ruledesk.engine.model.context import Emitted
from ruledesk.engine.model.jobs import Done, Failed, JobHandlers, Retry
from ruledesk.engine.store.base import Inbound
from support import ping_engine

T0 = 1_800_000_000.0

RULES = '''
rule "Announce" {
    when "Order is Imported"
    then "Ping"(target: "hook {{ order.id }}")
}
rule "Confirmed" {
    when "Order Confirmed"
    then "Set Order Metadata"(field: "confirmed", value: "yes")
}
rule "Failed ping" {
    when "Note Added"
    then "Tag Order"(name: "{{ event.note }}")
}
'''


def make_engine() -> Engine:
    return ping_engine(RULES)


@pytest.fixture
def store(backend_store):
    return backend_store


class Setup:
    """An order imported and processed (its "ping" job committed), a worker and a runner on one clock."""

    def __init__(self, store, handler=None, **options):
        self.store = store
        self.engine = make_engine()
        self.now = [T0]
        self.worker = Worker(store, lambda: self.engine, name="w", wall=lambda: self.now[0])
        self.handlers = JobHandlers()
        if handler is not None:
            self.handlers.register("ping", handler)
        self.attempts = []
        self.runner = DurableRunner(store, lambda: self.engine, self.handlers, name="r", clock=self.clock,
                                    on_attempt=self.attempts.append, **options)
        body = {"event": "Order is Imported", "order": {"id": "42", "email": "a@example.com"}, "store": "default",
                "id": "e1"}
        store.enqueue([Inbound("e1", "default", "42", "Order is Imported", json.dumps(body))], T0)
        assert self.worker.run_once() == 1
        [self.job] = store.jobs()

    def clock(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now[0], dt.timezone.utc)

    def at(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(T0 + seconds, dt.timezone.utc)

    def stored(self):
        return self.store.job(self.job.key)


def test_done_records_the_job_and_its_events_enter_the_inbox(store):
    seen = []

    def ping(job, ctx):
        seen.append((job.params["target"], ctx.order["email"], ctx.store.name, ctx.attempt, ctx.final))
        return Done(events=(Emitted("Order Confirmed", {}), Emitted("Note Added", {"note": "pinged"})),
                    detail={"ref": "abc"})

    s = Setup(store, ping)
    s.now[0] = T0 + 1
    assert s.runner.run_once() is True
    assert s.runner.run_once() is False
    assert seen == [("hook 42", "a@example.com", "default", 1, False)]
    job = s.stored()
    assert (job.status, job.attempts, job.error, job.finished_at, json.loads(job.detail)) == (
        "done", 1, None, T0 + 1, {"ref": "abc"})
    emitted = store.events(status="pending")
    assert [(e.id, e.name, e.source, e.order_id, e.store) for e in emitted] == [
        (f"{job.key}.1", "Order Confirmed", "job", "42", "default"),
        (f"{job.key}.2", "Note Added", "job", "42", "default")]
    assert json.loads(emitted[0].body)["hops"] == 1
    assert [(a.status, a.attempt) for a in s.attempts] == [("done", 1)]
    # the emitted events run through the rules, on the stored order
    assert s.worker.run_once() == 2
    order = json.loads(store.order("default", "42"))
    assert order["order_metadata"] == {"confirmed": "yes"} and order["tag_name"] == "pinged"
    assert order["email"] == "a@example.com"


def test_a_retry_waits_until_its_time_then_runs_again(store):
    def ping(job, ctx):
        if ctx.attempt == 1:
            return Retry(ctx.now() + dt.timedelta(seconds=30), "503")
        return Done()

    s = Setup(store, ping)
    assert s.runner.run_once() is True
    job = s.stored()
    assert (job.status, job.attempts, job.due_at, job.error, job.finished_at) == ("pending", 1, T0 + 30, "503", None)
    s.now[0] = T0 + 29
    assert s.runner.run_once() is False
    s.now[0] = T0 + 30
    assert s.runner.run_once() is True
    assert (s.stored().status, s.stored().attempts) == ("done", 2)
    assert [a.status for a in s.attempts] == ["retry", "done"]


def test_retries_past_max_attempts_fail_and_final_is_true_on_the_last(store):
    finals = []

    def ping(job, ctx):
        finals.append(ctx.final)
        return Retry(ctx.now() + dt.timedelta(seconds=1), "busy")

    s = Setup(store, ping, max_attempts=3)
    for step in range(5):
        s.now[0] = T0 + step * 10
        s.runner.run_once()
    assert finals == [False, False, True]
    job = s.stored()
    assert (job.status, job.attempts, job.error) == ("failed", 3, "gave up after 3 attempts: busy")
    assert store.events(status="pending") == []


def test_failed_with_events(store):
    def ping(job, ctx):
        return Failed("refused", events=(Emitted("Note Added", {"note": "ping failed"}),))

    s = Setup(store, ping)
    assert s.runner.run_once() is True
    job = s.stored()
    assert (job.status, job.error, job.finished_at) == ("failed", "refused", T0)
    [event] = store.events(status="pending")
    assert (event.id, event.source) == (f"{job.key}.1", "job")
    s.worker.run_once()
    assert json.loads(store.order("default", "42"))["tag_name"] == "ping failed"


def test_a_handler_that_raises_fails_its_job(store):
    def ping(job, ctx):
        raise RuntimeError("boom")

    s = Setup(store, ping)
    assert s.runner.run_once() is True
    job = s.stored()
    assert job.status == "failed" and "RuntimeError: boom" in job.error
    assert s.runner.run_once() is False


def test_a_job_without_handler_fails(store):
    s = Setup(store)
    assert s.runner.run_once() is True
    assert (s.stored().status, s.stored().error) == ("failed", "no handler for job kind 'ping'")


def test_a_retry_at_a_naive_time_fails(store):
    s = Setup(store, lambda job, ctx: Retry(dt.datetime(2030, 1, 1), "later"))
    s.runner.run_once()
    assert s.stored().status == "failed" and "aware datetime" in s.stored().error


def test_an_emitted_event_that_cannot_be_processed_fails_the_job_and_the_others_enter(store):
    def ping(job, ctx):
        return Done(events=(Emitted("No Such Event", {}), Emitted("Order Confirmed", {})))

    s = Setup(store, ping)
    s.runner.run_once()
    job = s.stored()
    assert job.status == "failed" and "cannot be processed" in job.error
    assert [e.id for e in store.events(status="pending")] == [f"{job.key}.2"]


def test_a_job_waits_while_an_event_of_its_order_is_being_processed(store):
    ran = []
    s = Setup(store, lambda job, ctx: ran.append(ctx.order.get("order_metadata")) or Done())
    body = {"event": "Order Confirmed", "order": {"id": "42"}, "store": "default", "id": "e2"}
    store.enqueue([Inbound("e2", "default", "42", "Order Confirmed", json.dumps(body))], T0)
    claim = store.claim("busy", T0, 30)
    assert claim is not None
    assert s.runner.run_once() is False and ran == []
    store.release("busy")
    s.worker.run_once()
    assert s.runner.run_once() is True
    assert ran == [{"confirmed": "yes"}]  # the job saw the order as the event left it
