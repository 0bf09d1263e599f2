"""The durable job runner: performs the jobs the store's outbox holds, once each in effect.

A job runs under its order's lease (never beside an event of its order).  Its handler ends in
done, retry at a time (the handler's backoff with jitter, or the server's Retry-After) or failed;
the end is recorded and the events the handler emitted enter the inbox in one transaction, with
ids derived from the job key, so a job run again after a crash (its end not recorded) emits the
same ids.  Receivers get the job key as an idempotency key: an effect repeated after a crash is
harmless where they dedupe (documented per job kind where they cannot).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ruledesk.engine.model.context import Emitted, utcnow
from ruledesk.engine.model.jobs import Done, Failed, Job, JobContext, JobHandlers, Outcome, Retry, gone, job_row
from ruledesk.engine.model.order import dump_order, folder_of, parse_order_json, to_json_text
from ruledesk.engine.run.engine import Engine, EventError
from ruledesk.engine.store.base import Inbound, JobClaim, JobFinish
from ruledesk.engine.store.sql import SqlStore

log = logging.getLogger("ruledesk.jobs")


@dataclass(frozen=True)
class JobAttempt:
    """One attempt at a job, as the runner recorded it (for logs and metrics)."""

    job: Job
    attempt: int
    status: str  # done | retry | failed
    error: str | None
    seconds: float


class DurableRunner:
    """Claims due jobs from ``store`` and runs the handler of each job's kind (``handlers``)."""

    def __init__(self, store: SqlStore, engine: Callable[[], Engine], handlers: JobHandlers, *, name: str,
                 clients: Mapping[str, Any] | None = None, clock: Callable[[], _dt.datetime] = utcnow,
                 lease: float = 120.0, max_attempts: int = 5,
                 on_attempt: Callable[[JobAttempt], None] | None = None) -> None:
        self.store = store
        self.engine = engine
        self.handlers = handlers
        self.name = name
        self.clients = dict(clients or {})
        self.clock = clock
        self.lease = lease
        self.max_attempts = max_attempts
        self.on_attempt = on_attempt
        self._claims = itertools.count(1)
        self.current: str | None = None

    def run_once(self) -> bool:
        """Run one due job; False when none is due."""
        holder = f"{self.name}:job{next(self._claims)}"
        self.current = holder
        try:
            claim = self.store.claim_job(holder, self.clock().timestamp(), self.lease)
            if claim is None:
                return False
            try:
                started = time.perf_counter()
                job, attempt, outcome = self._attempt(claim)
                finish, status, error = self._finish(claim, job, attempt, outcome)
                self.store.finish_job(claim, finish, self.clock().timestamp())
            except BaseException:
                try:
                    self.store.release(holder)
                except Exception:
                    log.debug("could not release %s", holder, exc_info=True)
                raise
        finally:
            self.current = None
        if self.on_attempt is not None:
            self.on_attempt(JobAttempt(job, attempt, status, error, time.perf_counter() - started))
        return True

    def _attempt(self, claim: JobClaim) -> tuple[Job, int, Outcome]:
        stored = claim.job
        job = Job(**orjson.loads(stored.body))
        attempt = stored.attempts + 1
        handler = self.handlers.get(job.kind)
        if handler is None:
            return job, attempt, Failed(f"no handler for job kind {job.kind!r}")
        if claim.order is None:  # moved to another store (or never stored): nothing to act on here
            return job, attempt, Failed(gone(job))
        engine = self.engine()
        try:
            order = parse_order_json(claim.order)
            store = engine.store(job.store)
        except Exception as exc:
            return job, attempt, Failed(f"cannot prepare the job: {type(exc).__name__}: {exc}")
        limit = self.handlers.max_attempts(job.kind, engine.config, self.max_attempts)
        context = JobContext(order, store, self.clients, self.clock, attempt, limit, engine.config)
        try:
            outcome = handler(job, context)
        except Exception as exc:  # a broken handler fails its job, never the runner
            return job, attempt, Failed(f"{job.kind} handler failed unexpectedly: {type(exc).__name__}: {exc}")
        if not isinstance(outcome, (Done, Retry, Failed)):
            return job, attempt, Failed(f"{job.kind} handler returned {type(outcome).__name__}, "
                                        "not Done, Retry or Failed")
        if isinstance(outcome, Retry) and (not isinstance(outcome.at, _dt.datetime) or outcome.at.tzinfo is None):
            return job, attempt, Failed(f"{job.kind} handler asked for a retry without an aware datetime: "
                                        f"{outcome.error}")
        return job, attempt, outcome

    def _finish(self, claim: JobClaim, job: Job, attempt: int, outcome: Outcome) -> tuple[JobFinish, str, str | None]:
        if isinstance(outcome, Retry):
            if attempt < self.handlers.max_attempts(job.kind, self.engine().config, self.max_attempts):
                return JobFinish("pending", outcome.error, due_at=outcome.at.timestamp()), "retry", outcome.error
            outcome = Failed(f"gave up after {attempt} attempts: {outcome.error}")
        detail = to_json_text(dict(outcome.detail)) if outcome.detail else None
        events, problem = self._events(claim, job, outcome.events)
        order = jobs = None
        if outcome.order is not None:
            order = (to_json_text(outcome.order), folder_of(outcome.order))
        if isinstance(outcome, Done):
            jobs = [job_row(later.job, claim.job.hops, (later.at or self.clock()).timestamp())
                    for later in outcome.jobs]
        finish = JobFinish("done", detail=detail, events=events, order=order, jobs=jobs or [])
        if problem is not None:
            return dataclasses.replace(finish, status="failed", error=problem), "failed", problem
        if isinstance(outcome, Failed):
            return dataclasses.replace(finish, status="failed", error=outcome.error), "failed", outcome.error
        return finish, "done", None

    def _events(self, claim: JobClaim, job: Job, emitted: tuple[Emitted, ...]) -> tuple[list[Inbound], str | None]:
        """The inbox entries of the events a handler emitted (validated now: one that cannot be
        processed fails the job, the others still enter the inbox)."""
        if not emitted:
            return [], None
        hops = claim.job.hops + 1
        engine = self.engine()
        if hops > engine.max_depth:
            return [], (f"job chain limit {engine.max_depth} reached: the {len(emitted)} event(s) this job "
                        "emitted were not processed")
        inbound, problems = [], []
        for number, item in enumerate(emitted, 1):
            event_id = f"{job.key}.{number}"
            store = item.store if item.store is not None else job.store
            order = dump_order(item.order) if item.order is not None else {"id": claim.job.order_id}
            data = {"event": item.name, "order": order, "payload": item.payload, "store": store, "id": event_id,
                    "hops": hops}
            if item.then is not None:  # recorded when this event commits, due then (see the worker)
                data["then"] = item.then.to_json()
            try:
                event = engine.event({k: v for k, v in data.items() if k not in ("hops", "then")})
            except EventError as exc:
                problems.append(f"emitted an event that cannot be processed: {exc}")
                continue
            order_id = event.order.get("id")
            inbound.append(Inbound(event_id, event.store.name, str(order_id), event.name,
                                   to_json_text({**data, "event": event.name, "payload": event.payload}),
                                   source="job"))
        return inbound, ("; ".join(problems) or None)
