"""The in-memory job runner: performs the jobs of results in this process, over in-memory orders (``ruledesk run``, tests, embedding)."""

from __future__ import annotations

import copy
import datetime as _dt
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ruledesk.engine.model.context import Emitted, Event, utcnow
from ruledesk.engine.model.jobs import Done, Failed, Job, JobContext, JobHandlers, Outcome, Retry, gone
from ruledesk.engine.model.order import dump_order
from ruledesk.engine.model.settings import StoreSettings
from ruledesk.engine.run.decision import Decision, OrderRef, Result
from ruledesk.engine.run.engine import Engine, EventError


@dataclass(frozen=True)
class JobRun:
    """One attempt at one job and how it ended."""

    job: Job
    attempt: int
    outcome: Outcome
    at: _dt.datetime

    @property
    def status(self) -> str:
        return {Done: "done", Retry: "retry", Failed: "failed"}[type(self.outcome)]


class MemoryRunner:
    """Runs jobs in-process, one at a time, so a job never runs beside an event of its order.

    ``submit(result)`` takes a result's orders (their latest state) and jobs; a job key seen
    before is ignored, as the durable store would.  ``run()`` performs every due job with the
    handler of its kind; the events a handler emits go through the engine with ids derived from
    the job key, and the jobs their rules record are queued in turn.  A ``Retry`` is honoured
    (waiting with the injected ``sleep``, at most ``max_wait`` seconds in all) up to
    ``max_attempts``; then the job fails.  Returns the results of the handler-emitted events.
    """

    def __init__(self, engine: Engine, handlers: JobHandlers, *, clients: Mapping[str, Any] | None = None,
                 clock: Callable[[], _dt.datetime] | None = None, sleep: Callable[[float], None] = time.sleep,
                 max_attempts: int = 5, max_wait: float = 60.0) -> None:
        self.engine = engine
        self.handlers = handlers
        self.clients = dict(clients or {})
        self.clock = clock or utcnow
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.orders: dict[OrderRef, dict[str, Any]] = {}
        self.stores: dict[str, StoreSettings] = {}
        self.runs: list[JobRun] = []
        self._queue: list[tuple[_dt.datetime, int, Job, int]] = []
        # jobs a handler scheduled for later (a status poll): run by a ``run()`` that finds them due,
        # never waited for (a batch run does not sit out podOS's production time)
        self.later: list[tuple[_dt.datetime, int, Job, int]] = []
        self._hops: dict[str, int] = {}  # job key -> how many jobs led to it (job -> event -> job ...)
        self._seen: set[str] = set()
        self._events: set[str] = set()  # ids of the events whose results were submitted
        self._sequence = itertools.count()

    def submit(self, result: Result, *, hops: int = 0) -> None:
        """Take a processed event's orders and jobs (what the daemon would commit); a result of an
        event already submitted is ignored, as the store acknowledges a re-delivered event.  The
        engine runs other orders' events in its cascade (it is not built with ``handoff=True``,
        which is for the daemon's inbox)."""
        if result.handoffs:
            raise ValueError("MemoryRunner takes the results of an engine without handoff=True: its events for "
                             "other orders were left to a daemon's inbox")
        if result.event_id in self._events:
            return
        self._events.add(result.event_id)
        self.orders.update(result.orders)
        for ref in result.removed:  # moved to another store
            self.orders.pop(ref, None)
        self.stores.update(result.stores)
        for job in result.jobs:
            self._queue_job(job, self.clock(), hops)

    def perform(self, result: Result) -> tuple[list[Decision], list[str]]:
        """Submit ``result`` and run the jobs that are due: its decisions followed by those of the
        events the jobs emitted, and a line for each job that failed (what `ruledesk run`, `tick`
        and `press --perform` print)."""
        done = len(self.runs)
        self.submit(result)
        later = self.run()
        failures = [f"job {run.job.kind} ({run.job.action}, {run.job.key}) failed: {run.outcome.error}"
                    for run in self.runs[done:] if run.status == "failed"]
        return result.decisions + [d for r in later for d in r.decisions], failures

    def _queue_job(self, job: Job, due: _dt.datetime, hops: int, *, wait: bool = True) -> None:
        if job.key not in self._seen:  # a key seen before is ignored, as the durable store would
            self._seen.add(job.key)
            self._hops[job.key] = hops
            entry = (due, next(self._sequence), job, 1)
            if wait or due <= self.clock():
                heapq.heappush(self._queue, entry)
            else:
                self.later.append(entry)

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self.later)

    def run(self) -> list[Result]:
        """Perform jobs until none is left (or the next one is due later than ``max_wait`` allows)."""
        results: list[Result] = []
        waited = 0.0
        now = self.clock()
        for entry in [e for e in self.later if e[0] <= now]:
            self.later.remove(entry)
            heapq.heappush(self._queue, entry)
        while self._queue:
            due, _, job, attempt = self._queue[0]
            delay = (due - self.clock()).total_seconds()
            if delay > 0:
                if waited + delay > self.max_wait:
                    break
                self.sleep(delay)
                waited += delay
                continue
            heapq.heappop(self._queue)
            outcome = self._attempt(job, attempt)
            self.runs.append(JobRun(job, attempt, outcome, self.clock()))
            if isinstance(outcome, Retry):
                if attempt < self.handlers.max_attempts(job.kind, self.engine.config, self.max_attempts):
                    heapq.heappush(self._queue, (outcome.at, next(self._sequence), job, attempt + 1))
                    continue
                outcome = Failed(f"gave up after {attempt} attempts: {outcome.error}")
                self.runs.append(JobRun(job, attempt, outcome, self.clock()))
            if outcome.order is not None:  # the integration's own change, before its events run
                self.orders[OrderRef(job.store, job.order_id)] = copy.deepcopy(outcome.order)
            if isinstance(outcome, Done):
                for later in outcome.jobs:  # continuations keep the chain's depth
                    self._queue_job(later.job, later.at or self.clock(), self._hops.get(job.key, 0), wait=False)
            results.extend(self._emit(job, attempt, outcome.events))
        return results

    def _store(self, name: str) -> StoreSettings:
        return self.stores.get(name) or self.engine.store(name)

    def _attempt(self, job: Job, attempt: int) -> Outcome:
        handler = self.handlers.get(job.kind)
        if handler is None:
            return Failed(f"no handler for job kind {job.kind!r}")
        held = self.orders.get(OrderRef(job.store, job.order_id))
        if held is None:  # moved to another store (or never submitted): nothing to act on here
            return Failed(gone(job))
        order = copy.deepcopy(held)  # a copy: orders change through events and their rules, never behind them
        limit = self.handlers.max_attempts(job.kind, self.engine.config, self.max_attempts)
        context = JobContext(order, self._store(job.store), self.clients, self.clock, attempt, limit,
                             self.engine.config)
        try:
            outcome = handler(job, context)
        except Exception as exc:  # a broken handler fails its job, never the runner
            return Failed(f"{job.kind} handler failed unexpectedly: {type(exc).__name__}: {exc}")
        if not isinstance(outcome, (Done, Retry, Failed)):
            return Failed(f"{job.kind} handler returned {type(outcome).__name__}, not Done, Retry or Failed")
        if isinstance(outcome, Retry) and (not isinstance(outcome.at, _dt.datetime) or outcome.at.tzinfo is None):
            return Failed(f"{job.kind} handler asked for a retry without an aware datetime: {outcome.error}")
        return outcome

    def _emit(self, job: Job, attempt: int, events: tuple[Emitted, ...]) -> list[Result]:
        """Process the events a handler emitted; one that cannot be processed (unknown event or
        store, bad payload) fails the job, the others are processed."""
        results: list[Result] = []
        hops = self._hops.get(job.key, 0) + 1
        if events and hops > self.engine.max_depth:
            self.runs.append(JobRun(job, attempt, Failed(
                f"job chain limit {self.engine.max_depth} reached: the {len(events)} event(s) this job emitted "
                "were not processed"), self.clock()))
            return results
        for number, item in enumerate(events, 1):
            try:
                store = item.store if item.store is not None else job.store
                order = item.order if item.order is not None else self.orders.get(OrderRef(store, job.order_id),
                                                                                  {"id": job.order_id})
                event = Event(item.name, dump_order(order), item.payload, self._store(store), f"{job.key}.{number}")
                result = self.engine.process(event, dry_run=False)
            except EventError as exc:
                self.runs.append(JobRun(job, attempt, Failed(f"emitted an event that cannot be processed: {exc}"),
                                        self.clock()))
                continue
            self.submit(result, hops=hops)
            if item.then is not None:  # the handler's continuation: after this event's rules
                self._queue_job(item.then, self.clock(), hops)
            results.append(result)
        return results
