"""Jobs: the effects external actions record instead of doing I/O, the outcomes of their handlers, and the registry of handlers per job kind."""

from __future__ import annotations

import datetime as _dt
import email.utils
import hashlib
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruledesk.engine.model.context import Emitted
from ruledesk.engine.model.order import to_json_text


@dataclass(frozen=True)
class Job:
    """One effect to perform outside the process (a podOS submission, an email, a webhook).

    ``key`` is derived from the id of the event whose rules recorded the job, the rule, the
    action's position in the rule and how many times that action ran in the firing (``for``
    blocks), so processing the same event twice yields the same key; receivers get it as an
    idempotency key.  ``params`` are the action's rendered, validated parameters (JSON-able).
    """

    kind: str
    key: str
    action: str
    rule: str
    event_id: str
    order_id: str | None
    store: str  # the name of the order's store
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "action": self.action, "rule": self.rule,
                "event_id": self.event_id, "order_id": self.order_id, "store": self.store, "params": self.params}


def job_key(event_id: str, rule: str, slot: int, occurrence: int) -> str:
    """The deterministic key of the job recorded by action ``slot`` of ``rule`` (its ``occurrence``-th
    run in that firing) on the event ``event_id``: short, and safe in a header or a Message-ID."""
    digest = hashlib.sha256(f"{event_id}\0{rule}\0{slot}\0{occurrence}".encode()).hexdigest()
    return f"job-{digest[:32]}"


def job_row(job: Job, hops: int = 0, due_at: float | None = None) -> dict[str, Any]:
    """A job as the store's outbox keeps it (``due_at`` None: due when it is committed)."""
    row = {"key": job.key, "kind": job.kind, "store": job.store, "order_id": job.order_id or "",
           "event_id": job.event_id, "body": to_json_text(job.to_json()), "hops": hops}
    if due_at is not None:
        row["due_at"] = due_at
    return row


# ---- what a handler returns --------------------------------------------------------------------


@dataclass(frozen=True)
class Later:
    """A job a handler schedules (a continuation such as the next status poll), due ``at`` (None: now)."""

    job: Job
    at: _dt.datetime | None = None


@dataclass(frozen=True)
class Done:
    """The job is done; ``events`` (for the job's order) enter the stream like any event.

    ``order`` is the order's new state when the integration itself changes it (podOS moving an
    accepted order to the After Import folder, adding a shipment): it is written with the job's
    end, under the order's lease, before ``events`` run on it.  ``jobs`` are scheduled in the same
    transaction (a key already stored is kept as it is)."""

    events: tuple[Emitted, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    order: dict[str, Any] | None = None
    jobs: tuple[Later, ...] = ()


@dataclass(frozen=True)
class Retry:
    """Run the job again at ``at`` (a transient failure: backoff with jitter, or the server's Retry-After)."""

    at: _dt.datetime
    error: str


@dataclass(frozen=True)
class Failed:
    """The job failed for good; ``events`` (typically the integration's failure event) enter the stream.

    ``order``, as for ``Done``, is the order's new state when the failure is recorded on it (a note
    saying a webhook was never delivered): written with the job's end, under the order's lease."""

    error: str
    events: tuple[Emitted, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)
    order: dict[str, Any] | None = None


Outcome = Done | Retry | Failed


@dataclass
class JobContext:
    """What a handler gets besides its job: the order as it is now, its store's settings (secrets
    included: handlers are the one place that may use them), injected clients, a clock, and the
    number of the attempt (1 for the first run)."""

    order: dict[str, Any]
    store: Any
    clients: Mapping[str, Any]
    clock: Callable[[], _dt.datetime]
    attempt: int = 1
    max_attempts: int = 5
    config: Any = None  # the active configuration (ruledesk.yaml: email, webhooks); None when embedded without one

    def now(self) -> _dt.datetime:
        return self.clock()

    @property
    def final(self) -> bool:
        """This is the last attempt: a handler gives up now with its failure event (``Failed(events=...)``)
        rather than a ``Retry`` the runner would turn into a bare failure."""
        return self.attempt >= self.max_attempts

    def backoff(self, base: float = 1.0, cap: float = 300.0, rng: Callable[[], float] = random.random
                ) -> _dt.datetime:
        """When to try again after this attempt: exponential backoff with full jitter (a random time
        up to ``base * 2**(attempt-1)`` seconds, at most ``cap``), so failed jobs do not retry in step."""
        return self.clock() + _dt.timedelta(seconds=rng() * min(cap, base * 2 ** (self.attempt - 1)))


def retry_after_seconds(value: str | None, now: _dt.datetime) -> float | None:
    """An HTTP ``Retry-After`` header in seconds from ``now``: a number of seconds or an HTTP date
    (a date gone by is negative: each caller decides what that means); None when absent or
    unreadable.  The one reading of the header every HTTP job's client shares."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone.utc)
        seconds = (moment - now).total_seconds()
    return None if math.isnan(seconds) else seconds


Handler = Callable[[Job, JobContext], Outcome]


# How many attempts a job kind gets: a number, or fn(config) -> a number (configurable, e.g.
# Post Order JSON's retries); None: the runner's default.
Attempts = int | Callable[[Any], int] | None


class JobHandlers:
    """The handlers by job kind; ``copy()`` gives a runner its own set to register on."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None,
                 attempts: Mapping[str, Attempts] | None = None) -> None:
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._attempts: dict[str, Attempts] = dict(attempts or {})

    def register(self, kind: str, handler: Handler, *, replace: bool = False, attempts: Attempts = None) -> Handler:
        if kind in self._handlers and not replace:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler
        if attempts is not None:
            self._attempts[kind] = attempts
        else:
            self._attempts.pop(kind, None)
        return handler

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def max_attempts(self, kind: str, config: Any, default: int) -> int:
        """How many attempts a job of ``kind`` gets: its own limit (given ``config``), else ``default``."""
        limit = self._attempts.get(kind)
        if limit is None:
            return default
        return int(limit(config) if callable(limit) else limit)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def copy(self) -> "JobHandlers":
        return JobHandlers(self._handlers, self._attempts)


HANDLERS = JobHandlers()


def handler(kind: str, *, attempts: Attempts = None) -> Callable[[Handler], Handler]:
    """Decorator: register ``fn(job, ctx) -> Done | Retry | Failed`` for ``kind`` in the default
    handlers; ``attempts`` overrides the runner's attempts for this kind (a number or fn(config))."""

    def register(fn: Handler) -> Handler:
        return HANDLERS.register(kind, fn, attempts=attempts)

    return register


# ---- previews: what a job would send, for a dry run ------------------------------------------------

# fn(job, ctx) -> the request the job would send now (JSON-able), computed without any effect
# (read-only look-ups are allowed: podOS resolves a product's variants).  A dry run shows it in
# the action's ``detail.preview``.
Preview = Callable[[Job, JobContext], dict[str, Any]]
PREVIEWS: dict[str, Preview] = {}


def preview(kind: str) -> Callable[[Preview], Preview]:
    """Decorator: register what a dry run shows for jobs of ``kind``."""

    def register(fn: Preview) -> Preview:
        PREVIEWS[kind] = fn
        return fn

    return register


# ---- callbacks: a service telling ruledesk that something happened (podOS: an order shipped) ------


class CallbackError(Exception):
    """A callback refused: ``status`` (401 bad signature, 404 unknown order, 400/422 bad body) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# fn(store settings, request headers (lower-case names), raw body, order_exists(order_id)) -> the
# jobs to queue.  A callback authenticates its own way (podOS: an HMAC of the body keyed with the
# store's podOS token) and raises CallbackError to refuse.
Callback = Callable[[Any, Mapping[str, str], bytes, Callable[[str], bool]], list[Job]]
CALLBACKS: dict[str, Callback] = {}


def callback(integration: str) -> Callable[[Callback], Callback]:
    """Decorator: serve ``fn`` at the daemon's ``POST /v1/callbacks/{integration}/{store}``."""

    def register(fn: Callback) -> Callback:
        if integration in CALLBACKS:
            raise ValueError(f"a callback for {integration!r} is already registered")
        CALLBACKS[integration] = fn
        return fn

    return register


def gone(job: Job) -> str:
    """Why a job of an order its store does not hold fails without running: a hollow stand-in of the
    order must never be posted, emailed or submitted, nor written back into the store."""
    return (f"the order {job.order_id} is not in store {job.store!r} (moved to another store, or never "
            f"stored): {job.action or job.kind} was not performed")
