"""Adversarial tests of the in-memory runner: handlers that misbehave, emit what cannot be processed,
mutate the order, chain jobs; re-submission of a result."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import BaseModel

from ruledesk.engine import ActionSpec, Engine, default_actions, default_events
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.model.context import Emitted
from ruledesk.engine.model.jobs import Done, JobHandlers, Retry
from support import NOW, fixed_clock

RULES = '''
rule "Announce" { when "Order is Imported" then "Ping"(target: "a") "Ping"(target: "b") }
rule "Confirmed" { when "Order Confirmed" then "Tag Order"(name: "confirmed") }
'''
EVENT = {"event": "Order is Imported", "id": "evt-1", "order": {"id": "1"}}


class PingParams(BaseModel):
    target: str


def runner_for(handler, rules: str = RULES, **options) -> tuple[Engine, MemoryRunner]:
    actions = default_actions()
    actions.register(ActionSpec("Ping", PingParams, job="ping"))
    engine = Engine.from_source(rules, actions=actions, events=default_events(), clock=fixed_clock, **options)
    handlers = JobHandlers()
    handlers.register("ping", handler)
    return engine, MemoryRunner(engine, handlers, clock=fixed_clock, sleep=lambda seconds: None)


@pytest.mark.parametrize("emitted, reason", [
    (Emitted("No Such Event", {}), "unknown event"),
    (Emitted("Note Added", {}), "bad payload"),
    (Emitted("Order Confirmed", {}, store=""), "store"),
])
def test_a_handler_event_that_cannot_be_processed_fails_its_job_not_the_runner(emitted, reason) -> None:
    def ping(job, ctx):
        return Done(events=(emitted,) if job.params["target"] == "a" else (Emitted("Order Confirmed", {}),))

    engine, runner = runner_for(ping)
    runner.submit(engine.process(EVENT))
    results = runner.run()  # must not raise: the second job still runs and its event is processed
    assert [r.decisions[0].event for r in results] == ["Order Confirmed"]
    failed = [run for run in runner.runs if run.status == "failed"]
    assert len(failed) == 1 and failed[0].job.params == {"target": "a"} and reason in failed[0].outcome.error
    assert runner.orders[("default", "1")]["tag_name"] == "confirmed"


@pytest.mark.parametrize("outcome", [None, "done", Retry(dt.datetime(2026, 11, 23, 12, 0), "naive time")])
def test_a_handler_returning_nonsense_fails_its_job_not_the_runner(outcome) -> None:
    engine, runner = runner_for(lambda job, ctx: outcome if job.params["target"] == "a" else Done())
    runner.submit(engine.process(EVENT))
    runner.run()
    assert [(run.job.params["target"], run.status) for run in runner.runs] == [("a", "failed"), ("b", "done")]


def test_a_handler_cannot_change_the_order_behind_the_rules_back() -> None:
    """Orders change through events and their rules; a durable runner would not keep a handler's
    edits to ctx.order, so the in-memory one must not either."""
    def ping(job, ctx):
        ctx.order["tag_name"] = "changed by a handler"
        ctx.order.setdefault("order_metadata", {})["x"] = "y"
        return Done()

    engine, runner = runner_for(ping)
    result = engine.process(EVENT)
    runner.submit(result)
    runner.run()
    assert runner.orders[("default", "1")].get("tag_name") in ("", None)
    assert not runner.orders[("default", "1")].get("order_metadata")


def test_resubmitting_a_result_does_not_roll_back_what_its_jobs_led_to() -> None:
    engine, runner = runner_for(lambda job, ctx: Done(events=(Emitted("Order Confirmed", {}),)))
    result = engine.process(EVENT)
    runner.submit(result)
    runner.run()
    assert runner.orders[("default", "1")]["tag_name"] == "confirmed"
    runner.submit(result)  # a re-delivery: the same result again
    runner.submit(engine.process(EVENT))  # or the same event processed again
    assert runner.run() == []
    assert runner.orders[("default", "1")]["tag_name"] == "confirmed"


def test_chains_of_handler_events_and_jobs_run_with_derived_ids() -> None:
    rules = '''
    rule "First" { when "Order is Imported" then "Ping"(target: "first") }
    rule "Second" { when "Order Confirmed" then "Ping"(target: "second") }
    rule "Noted" { when "Note Added" then "Tag Order"(name: "{{ event.note }}") }
    '''

    def ping(job, ctx):
        if job.params["target"] == "first":
            return Done(events=(Emitted("Order Confirmed", {}),))
        return Done(events=(Emitted("Note Added", {"note": "second done"}),))

    engine, runner = runner_for(ping, rules)
    result = engine.process(EVENT)
    runner.submit(result)
    results = runner.run()
    [first] = result.jobs
    assert [r.event_id for r in results] == [f"{first.key}.1", f"{results[0].jobs[0].key}.1"]
    assert [run.job.params["target"] for run in runner.runs] == ["first", "second"]
    assert runner.orders[("default", "1")]["tag_name"] == "second done"
    again_engine, again = runner_for(ping, rules)
    again.submit(again_engine.process(EVENT))
    assert [r.event_id for r in again.run()] == [r.event_id for r in results]


def test_a_job_event_job_loop_is_cut_by_the_depth_limit() -> None:
    runs = []

    def ping(job, ctx):
        runs.append(job.key)
        return Done(events=(Emitted("Order Confirmed", {}),) if len(runs) < 25 else ())

    rules = 'rule "Loop" { when "Order is Imported", "Order Confirmed" then "Ping"(target: "x") }'
    engine, runner = runner_for(ping, rules, max_depth=3)
    runner.submit(engine.process(EVENT))
    runner.run()
    assert len(runs) == 4
    assert runner.runs[-1].status == "failed" and "job chain limit 3 reached" in runner.runs[-1].outcome.error


def test_retry_then_done_keeps_the_key_and_derives_the_event_ids_from_it() -> None:
    now = [NOW]
    attempts = []

    def ping(job, ctx):
        attempts.append((job.key, ctx.attempt))
        if ctx.attempt < 3:
            return Retry(ctx.now() + dt.timedelta(seconds=5), "busy")
        return Done(events=(Emitted("Order Confirmed", {}),))

    engine, runner = runner_for(ping, 'rule "A" { when "Order is Imported" then "Ping"(target: "a") }')

    def sleep(seconds: float) -> None:
        now[0] += dt.timedelta(seconds=seconds)

    runner.clock, runner.sleep = (lambda: now[0]), sleep
    result = engine.process(EVENT)
    runner.submit(result)
    [emitted] = runner.run()
    assert attempts == [(result.jobs[0].key, 1), (result.jobs[0].key, 2), (result.jobs[0].key, 3)]
    assert emitted.event_id == f"{result.jobs[0].key}.1"
