"""The Store interface: what the daemon keeps (stores, orders, the event inbox, jobs, decisions,
shipments, API tokens, rulesets) and the operations its intake, workers and job runner need.

Two backends implement it with the same schema and the same behaviour (``sql.SqlStore``):
SQLite (``sqlite.SqliteStore``, the embedded default) and PostgreSQL (``postgres.PostgresStore``,
several daemons on one database).  Every method is one transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

KINDS = ("event", "button", "schedule")
SCOPES = ("read", "write")


class StoreError(Exception):
    """The store cannot do what was asked now (unreachable, disk full, ...): retry later."""


@dataclass(frozen=True)
class Inbound:
    """An event to put in the inbox: ``body`` is its JSON text (section 8's input shape, or a
    button press / a scheduled run), ``id`` the id that makes re-delivery harmless."""

    id: str
    store: str
    order_id: str
    name: str
    body: str
    kind: str = "event"
    source: str = "api"


@dataclass
class StoredEvent:
    seq: int
    id: str
    store: str
    order_id: str
    name: str
    kind: str
    body: str
    source: str
    status: str
    attempts: int
    error: str | None
    received_at: float
    processed_at: float | None = None
    ruleset: str | None = None


@dataclass
class Claim:
    """Orders leased to one worker (no one else works on them until the lease ends or is released),
    their pending events in inbox order, and their stored state (JSON text, None if not stored)."""

    holder: str
    until: float
    events: list[StoredEvent]
    orders: dict[tuple[str, str], str | None]


@dataclass
class Processed:
    """What processing one inbox event produced, to commit with the others of its claim."""

    seq: int
    ruleset: str
    decisions: list[dict[str, Any]]  # {event_id, store, order_id, name, ruleset, body}
    jobs: list[dict[str, Any]]  # {key, kind, store, order_id, event_id, body, hops}
    events: list["Inbound"] = field(default_factory=list)  # events for other orders (Result.handoffs)
    removed: list[tuple[str, str]] = field(default_factory=list)  # orders that left their store (moved)


@dataclass
class Unprocessed:
    """An inbox event whose processing raised: tried again later, set aside after ``max_attempts``."""

    seq: int
    error: str


@dataclass
class StoredJob:
    key: str
    kind: str
    store: str
    order_id: str
    event_id: str
    body: str
    status: str
    attempts: int
    due_at: float
    hops: int
    error: str | None
    detail: str | None
    created_at: float
    finished_at: float | None


@dataclass
class JobClaim:
    holder: str
    until: float
    job: StoredJob
    order: str | None  # the order's stored JSON text


@dataclass
class JobFinish:
    """How a job attempt ended: ``status`` pending (a retry at ``due_at``), done or failed; the
    events it emitted enter the inbox in the same transaction."""

    status: str
    error: str | None = None
    due_at: float | None = None
    detail: str | None = None
    events: list[Inbound] = field(default_factory=list)
    order: tuple[str, str | None] | None = None  # the order's new state (JSON text, folder), written under the lease
    jobs: list[dict[str, Any]] = field(default_factory=list)  # jobs it scheduled (rows as Processed.jobs)


@dataclass(frozen=True)
class Token:
    store: str
    scope: str
    label: str | None = None


def token_hash(token: str) -> str:
    """Tokens are stored by their SHA-256: they are long random strings, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
