"""Effects as jobs: external actions record jobs (no I/O during evaluation), deterministic keys and
event ids, and the in-memory runner performing them and feeding the events handlers emit back in."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from ruledesk.engine import ActionSpec, Engine, default_actions, default_events
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.model.context import Emitted
from ruledesk.engine.model.jobs import Done, Failed, JobHandlers, Retry
from support import fixed_clock

RULES = '''
rule "Announce" {
    when "Order is Imported"
    then
        "Ping"(target: "https://hooks.example/{{ order.id }}")
        for item in order.order_items {
            "Ping"(target: "item {{ item.code }}")
        }
}
rule "Confirmed" {
    when "Order Confirmed"
    then "Set Order Metadata"(field: "confirmed", value: "{{ event.by }}")
}
rule "Failed ping" {
    when "Note Added"
    then "Tag Order"(name: "ping failed")
}
'''


class PingParams(BaseModel):
    target: str


def ping_catalogue() -> tuple:
    """A catalogue with the test job kind "ping": an external action that records a job and does nothing else."""
    actions = default_actions()
    actions.register(ActionSpec("Ping", PingParams, job="ping", description="test: ping a target"))
    return actions


def engine_for(rules: str = RULES) -> Engine:
    return Engine.from_source(rules, actions=ping_catalogue(), events=default_events(), clock=fixed_clock)


ORDER = {"event": "Order is Imported", "id": "evt-42",
         "order": {"id": "42", "order_items": [{"id": "1", "code": "A"}]}}


def test_external_actions_record_jobs_instead_of_running() -> None:
    result = engine_for().process(ORDER)
    [decision] = result.decisions
    assert [(a.action, a.status) for a in decision.actions] == [("Ping", "scheduled"), ("Ping", "scheduled")]
    assert [(j.kind, j.params, j.order_id, j.event_id) for j in result.jobs] == [
        ("ping", {"target": "https://hooks.example/42"}, "42", "evt-42"),
        ("ping", {"target": "item A"}, "42", "evt-42")]
    assert decision.actions[0].job is result.jobs[0]
    assert decision.to_json()["actions"][0]["job"]["key"] == result.jobs[0].key
    assert len({job.key for job in result.jobs}) == 2


def test_dry_run_shows_the_job_that_would_run() -> None:
    result = engine_for().process(ORDER, dry_run=True)
    action = result.decisions[0].to_json()["actions"][0]
    assert action["status"] == "dry-run"
    assert action["job"]["params"] == {"target": "https://hooks.example/42"} and action["job"]["kind"] == "ping"


def test_the_same_event_twice_yields_the_same_job_keys_and_event_ids() -> None:
    rules = RULES + '\nrule "Move" { when "Order is Imported" then "Move to Folder"(folder: "Sent") }\n'
    first, again = engine_for(rules).process(ORDER), engine_for(rules).process(ORDER)
    assert [j.key for j in first.jobs] == [j.key for j in again.jobs]
    assert [e.id for e in first.events] == [e.id for e in again.events] == ["evt-42.1"]
    other = engine_for(rules).process({**ORDER, "id": "evt-43"})
    assert not {j.key for j in other.jobs} & {j.key for j in first.jobs}
    # without an id, the event's content decides it
    bare = {"event": "Order is Imported", "order": ORDER["order"]}
    assert engine_for(rules).process(bare).event_id == engine_for(rules).process(dict(bare)).event_id
    assert [d.event_id for d in engine_for(rules).process(bare).decisions][1].endswith(".1")


def test_the_in_memory_runner_performs_jobs_and_processes_the_events_handlers_emit() -> None:
    engine = engine_for()
    seen: list[tuple[str, str, int]] = []
    handlers = JobHandlers()

    def ping(job, ctx):
        seen.append((job.params["target"], ctx.order["id"], ctx.attempt))
        return Done(events=(Emitted("Order Confirmed", {"by": job.params["target"]}),))

    handlers.register("ping", ping)

    runner = MemoryRunner(engine, handlers, clock=fixed_clock)
    result = engine.process(ORDER)
    runner.submit(result)
    emitted = runner.run()
    assert seen == [("https://hooks.example/42", "42", 1), ("item A", "42", 1)]
    assert [r.decisions[0].event for r in emitted] == ["Order Confirmed", "Order Confirmed"]
    assert [r.event_id for r in emitted] == [f"{result.jobs[0].key}.1", f"{result.jobs[1].key}.1"]
    assert [r.decisions[0].fired for r in emitted] == [["Confirmed"], ["Confirmed"]]
    # the rules of the emitted events ran on the order as it is now, and their changes are kept
    assert runner.orders[("default", "42")]["order_metadata"] == {"confirmed": "item A"}
    assert [run.status for run in runner.runs] == ["done", "done"]
    # submitting the same result again (a re-delivery) runs nothing twice
    runner.submit(engine.process(ORDER))
    assert runner.run() == [] and len(seen) == 2


def test_retries_wait_and_a_terminal_failure_emits_the_handlers_events() -> None:
    now = [dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += dt.timedelta(seconds=seconds)

    handlers = JobHandlers()

    def flaky(job, ctx):
        if ctx.attempt < 3:
            return Retry(ctx.now() + dt.timedelta(seconds=30 * ctx.attempt), "503 from the receiver")
        return Failed("refused", events=(Emitted("Note Added", {"note": "ping failed for good"}),))

    handlers.register("ping", flaky)
    engine = Engine.from_source(RULES, actions=ping_catalogue(), events=default_events(), clock=lambda: now[0])
    runner = MemoryRunner(engine, handlers, clock=lambda: now[0], sleep=sleep, max_wait=120)
    runner.submit(engine.process({**ORDER, "order": {"id": "42"}}))
    [note] = runner.run()
    assert slept == [30, 60]
    assert [(run.attempt, run.status) for run in runner.runs] == [(1, "retry"), (2, "retry"), (3, "failed")]
    assert note.decisions[0].fired == ["Failed ping"]
    assert runner.orders[("default", "42")]["tag_name"] == "ping failed"


def test_a_job_without_handler_or_with_a_broken_one_fails_itself() -> None:
    engine = engine_for()
    runner = MemoryRunner(engine, JobHandlers(), clock=fixed_clock)
    runner.submit(engine.process(ORDER))
    assert runner.run() == []
    assert {run.outcome.error for run in runner.runs} == {"no handler for job kind 'ping'"}

    def broken(job, ctx):
        raise RuntimeError("boom")

    runner = MemoryRunner(engine, JobHandlers({"ping": broken}), clock=fixed_clock)
    runner.submit(engine.process(ORDER))
    runner.run()
    assert all("RuntimeError: boom" in run.outcome.error for run in runner.runs)


def test_retries_give_up_after_max_attempts_and_never_wait_past_max_wait() -> None:
    now = [dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)]

    def sleep(seconds: float) -> None:
        now[0] += dt.timedelta(seconds=seconds)

    def always_busy(job, ctx):
        return Retry(ctx.now() + dt.timedelta(seconds=1), "busy")

    engine = engine_for()
    runner = MemoryRunner(engine, JobHandlers({"ping": always_busy}), clock=lambda: now[0], sleep=sleep,
                          max_attempts=3)
    runner.submit(engine.process({**ORDER, "order": {"id": "42"}}))
    runner.run()
    assert [run.status for run in runner.runs] == ["retry", "retry", "retry", "failed"]
    assert runner.runs[-1].outcome.error == "gave up after 3 attempts: busy"

    def much_later(job, ctx):
        return Retry(ctx.now() + dt.timedelta(hours=2), "come back later")

    runner = MemoryRunner(engine, JobHandlers({"ping": much_later}), clock=lambda: now[0], sleep=sleep, max_wait=60)
    runner.submit(engine.process({**ORDER, "order": {"id": "42"}}))
    runner.run()
    assert runner.pending == 1 and [run.status for run in runner.runs] == ["retry"]
