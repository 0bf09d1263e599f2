"""The versioned schema of a store, one step per version, applied in order on start.

Each step is a list of statements written once for both backends: ``{id}`` is an
auto-increment primary key and ``{real}`` a double, replaced per dialect.  A step never
changes once released; a new version appends a step.
"""

from __future__ import annotations

STEPS: list[list[str]] = [
    # version 1
    [
        "CREATE TABLE stores (name TEXT PRIMARY KEY, store_id TEXT, updated_at {real} NOT NULL)",
        # orders: the state ruledesk keeps of each order (JSON text as dump_order writes it)
        "CREATE TABLE orders (store TEXT NOT NULL, id TEXT NOT NULL, folder TEXT, data TEXT NOT NULL,"
        " version BIGINT NOT NULL, updated_at {real} NOT NULL, PRIMARY KEY (store, id))",
        "CREATE INDEX orders_folder ON orders (store, folder)",
        # events: the durable inbox.  kind: event | button | schedule.  status: pending | done | poison
        "CREATE TABLE events (seq {id}, id TEXT NOT NULL UNIQUE, store TEXT NOT NULL, order_id TEXT NOT NULL,"
        " name TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, source TEXT NOT NULL,"
        " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, received_at {real} NOT NULL,"
        " processed_at {real}, ruleset TEXT)",
        "CREATE INDEX events_pending ON events (seq) WHERE status = 'pending'",
        "CREATE INDEX events_order ON events (store, order_id, seq)",
        # order_leases: who may work on an order now (an event batch or a job), until when
        "CREATE TABLE order_leases (store TEXT NOT NULL, order_id TEXT NOT NULL, holder TEXT NOT NULL,"
        " until {real} NOT NULL, PRIMARY KEY (store, order_id))",
        "CREATE INDEX order_leases_holder ON order_leases (holder)",
        # jobs: the outbox and its timers.  status: pending | done | failed
        "CREATE TABLE jobs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, store TEXT NOT NULL, order_id TEXT NOT NULL,"
        " event_id TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " due_at {real} NOT NULL, hops INTEGER NOT NULL DEFAULT 0, error TEXT, detail TEXT,"
        " created_at {real} NOT NULL, finished_at {real})",
        "CREATE INDEX jobs_due ON jobs (due_at) WHERE status = 'pending'",
        # decisions: one per processed event (the incoming one and those it emitted), section 8 JSON
        # with the explanation (the deciding clause of each rule that did not fire)
        "CREATE TABLE decisions (seq {id}, event_id TEXT NOT NULL, top_event_id TEXT NOT NULL, store TEXT NOT NULL,"
        " order_id TEXT NOT NULL, name TEXT NOT NULL, ruleset TEXT NOT NULL, body TEXT NOT NULL,"
        " created_at {real} NOT NULL)",
        "CREATE INDEX decisions_order ON decisions (store, order_id, seq)",
        "CREATE INDEX decisions_event ON decisions (top_event_id)",
        "CREATE TABLE shipments (store TEXT NOT NULL, order_id TEXT NOT NULL, tracking_number TEXT NOT NULL,"
        " carrier TEXT, method TEXT, url TEXT, data TEXT NOT NULL, created_at {real} NOT NULL,"
        " PRIMARY KEY (store, order_id, tracking_number))",
        # tokens: API bearer tokens, by the SHA-256 of the token (the token itself is never stored)
        "CREATE TABLE tokens (hash TEXT PRIMARY KEY, store TEXT NOT NULL, scope TEXT NOT NULL,"
        " label TEXT, created_at {real} NOT NULL)",
        # rulesets: every ruleset that was active, with its sources (a restart with broken files serves the last)
        "CREATE TABLE rulesets (version TEXT PRIMARY KEY, sources TEXT NOT NULL, activated_at {real} NOT NULL)",
        # rejects: intake lines that could not be taken (followed files, standard input), kept for inspection
        "CREATE TABLE rejects (seq {id}, source TEXT NOT NULL, body TEXT NOT NULL, reason TEXT NOT NULL,"
        " received_at {real} NOT NULL)",
    ],
]

VERSION = len(STEPS)
