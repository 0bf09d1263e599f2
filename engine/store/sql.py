"""The store on SQL: one implementation of ``Store`` for both backends, which differ only in how
they connect, their placeholders, their column types and the claim's row locking (``Dialect``)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ruledesk.engine.store import migrations
from ruledesk.engine.store.base import (SCOPES, Claim, Inbound, JobClaim, JobFinish, Processed, StoredEvent,
                                        StoredJob, StoreError, Token, Unprocessed, token_hash)

_EVENT_COLUMNS = ("seq, id, store, order_id, name, kind, body, source, status, attempts, error, received_at,"
                  " processed_at, ruleset")
_JOB_COLUMNS = ("key, kind, store, order_id, event_id, body, status, attempts, due_at, hops, error, detail,"
                " created_at, finished_at")

# an order whose lease is still running (the candidate row is ``e``; the parameter is now)
_HELD = "SELECT 1 FROM order_leases l WHERE l.store = e.store AND l.order_id = e.order_id AND l.until >= ?"


class LeaseLost(StoreError):
    """The claim's lease ended and another worker took its orders: nothing of it was committed."""


class Tx:
    """A transaction's statements: ``?`` placeholders, rows as tuples."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self.cursor = cursor
        self._placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(self._sql(sql), params)
        return self.cursor.rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self.cursor.executemany(self._sql(sql), rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.cursor.execute(self._sql(sql), params)
        return list(self.cursor.fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        self.cursor.execute(self._sql(sql), params)
        return self.cursor.fetchone()


class SqlStore:
    """The Store: see ``ruledesk.engine.store.base`` for the data and DESIGN.md for the contract.

    Subclasses give ``_transaction()`` (a context manager yielding a ``Tx``, committed on exit,
    rolled back on an exception, foreign errors translated to ``StoreError``), ``_read()`` (the
    same for reads), ``close()`` and the dialect's words below."""

    url: str = ""
    backend: str = ""
    ID = "INTEGER PRIMARY KEY"
    REAL = "REAL"
    SKIP_LOCKED = ""  # appended to the claim's candidate query
    FOR_UPDATE = ""  # appended to the commit's lock of its rows (SQLite: the transaction holds the file lock)

    # ---- subclass hooks ---------------------------------------------------------------------
    def _transaction(self) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Tx]:
        return self._transaction()

    def _lock_schema(self, tx: Tx) -> None:
        """Serialise migrations between daemons starting at once."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "SqlStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url_for_display}>"

    @property
    def url_for_display(self) -> str:
        """The URL without a password (for logs and /readyz)."""
        head, at, tail = self.url.rpartition("@")
        if not at:
            return self.url
        scheme, _, auth = head.partition("://")
        user = auth.split(":", 1)[0]
        return f"{scheme}://{user}@{tail}" if user else f"{scheme}://{tail}"

    # ---- schema --------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the schema steps this database has not had yet; returns the schema version."""
        with self._transaction() as tx:
            self._lock_schema(tx)
            tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = tx.one("SELECT max(version) FROM schema_version")
            current = (row[0] if row else None) or 0
            if current > migrations.VERSION:
                raise StoreError(f"the database has schema version {current}, newer than this ruledesk "
                                 f"({migrations.VERSION}): upgrade ruledesk")
            for version in range(current + 1, migrations.VERSION + 1):
                for statement in migrations.STEPS[version - 1]:
                    tx.run(statement.format(id=self.ID, real=self.REAL))
                tx.run("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return migrations.VERSION

    def schema_version(self) -> int:
        with self._read() as tx:
            row = tx.one("SELECT max(version) FROM schema_version")
        return (row[0] if row else None) or 0

    def ping(self) -> None:
        """Raise StoreError if the database cannot be reached now."""
        with self._read() as tx:
            tx.one("SELECT 1")

    # ---- stores and tokens -------------------------------------------------------------------
    def sync_stores(self, stores: Iterable[tuple[str, str | None]], now: float) -> None:
        """Record the configured stores (name, Order Desk store id); settings stay in the configuration."""
        with self._transaction() as tx:
            tx.many("INSERT INTO stores (name, store_id, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                    " SET store_id = excluded.store_id, updated_at = excluded.updated_at",
                    [(name, store_id, now) for name, store_id in stores])

    def revoke_token(self, token: str) -> bool:
        """Delete a token (a daemon stops taking it within its token cache time, 30 s)."""
        with self._transaction() as tx:
            return tx.run("DELETE FROM tokens WHERE hash = ?", (token_hash(token),)) == 1

    def store_names(self) -> list[str]:
        with self._read() as tx:
            return [row[0] for row in tx.rows("SELECT name FROM stores ORDER BY name")]

    def create_token(self, store: str, scope: str, now: float, label: str | None = None) -> str:
        """A new API token for ``store`` with ``scope`` (read or write); only its hash is kept."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        token = f"rd_{secrets.token_urlsafe(32)}"
        with self._transaction() as tx:
            tx.run("INSERT INTO tokens (hash, store, scope, label, created_at) VALUES (?, ?, ?, ?, ?)",
                   (token_hash(token), store, scope, label, now))
        return token

    def token(self, token: str) -> Token | None:
        with self._read() as tx:
            row = tx.one("SELECT store, scope, label FROM tokens WHERE hash = ?", (token_hash(token),))
        return Token(*row) if row else None

    # ---- intake -------------------------------------------------------------------------------
    def enqueue(self, events: Sequence[Inbound], now: float) -> list[bool]:
        """Put events in the inbox, durably, in one transaction; for each, True if it is new (an id
        already in the inbox is acknowledged and ignored)."""
        with self._transaction() as tx:
            return self._insert_events(tx, events, now)

    def _insert_events(self, tx: Tx, events: Sequence[Inbound], now: float) -> list[bool]:
        """Insert in one statement per 500 events (one round trip), in the given order; an id is new
        where the database inserted it, the first time it occurs in ``events``."""
        inserted: set[str] = set()
        for start in range(0, len(events), 500):
            chunk = events[start:start + 500]
            params: list[Any] = []
            for e in chunk:
                params.extend((e.id, e.store, e.order_id, e.name, e.kind, e.body, e.source, now))
            rows = tx.rows("INSERT INTO events (id, store, order_id, name, kind, body, source, status, received_at)"
                           " VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, 'pending', ?)"] * len(chunk))
                           + " ON CONFLICT (id) DO NOTHING RETURNING id", params)
            inserted.update(row[0] for row in rows)
        new = []
        for e in events:
            new.append(e.id in inserted)
            inserted.discard(e.id)  # a second copy in the same batch is a duplicate
        return new

    def reject(self, source: str, body: str, reason: str, now: float) -> None:
        """Keep an intake line that could not be taken, with the reason, for inspection; the same
        line at the same place is kept once (a followed file read again after a restart)."""
        with self._transaction() as tx:
            tx.run("INSERT INTO rejects (source, body, reason, received_at) SELECT ?, ?, ?, ? WHERE NOT EXISTS"
                   " (SELECT 1 FROM rejects WHERE source = ? AND body = ?)", (source, body, reason, now, source, body))

    def rejects(self) -> list[tuple[str, str, str]]:
        with self._read() as tx:
            return [tuple(row) for row in tx.rows("SELECT source, body, reason FROM rejects ORDER BY seq")]

    # ---- event work ---------------------------------------------------------------------------
    def _lease(self, tx: Tx, orders: Iterable[tuple[str, str]], holder: str, until: float, now: float) -> None:
        tx.many("INSERT INTO order_leases (store, order_id, holder, until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (store, order_id) DO UPDATE SET holder = excluded.holder, until = excluded.until"
                " WHERE order_leases.until < ?", [(store, order_id, holder, until, now) for store, order_id in orders])

    def claim(self, holder: str, now: float, lease: float, limit: int = 200, orders: int = 100) -> Claim | None:
        """Lease the orders of the oldest pending events (up to ``orders`` orders no one else holds)
        and return their pending events in inbox order (at most ``limit``) with their stored state."""
        until = now + lease
        with self._transaction() as tx:
            # orders someone else holds are passed over: a busy order must not starve the others
            candidates = tx.rows(f"SELECT store, order_id FROM events e WHERE status = 'pending' AND NOT EXISTS"
                                 f" ({_HELD}) ORDER BY seq LIMIT ?{self.SKIP_LOCKED}", (now, limit))
            wanted = list(dict.fromkeys((store, order_id) for store, order_id in candidates))[:orders]
            if not wanted:
                return None
            self._lease(tx, sorted(wanted), holder, until, now)  # one lock order for every claim: no deadlock
            rows = tx.rows(f"SELECT {', '.join('e.' + c for c in _EVENT_COLUMNS.split(', '))} FROM events e"
                           " JOIN order_leases l ON l.store = e.store AND l.order_id = e.order_id"
                           " WHERE l.holder = ? AND e.status = 'pending' ORDER BY e.seq LIMIT ?", (holder, limit))
            if not rows:
                tx.run("DELETE FROM order_leases WHERE holder = ?", (holder,))
                return None
            leased = {(store, order_id): None for store, order_id in
                      tx.rows("SELECT store, order_id FROM order_leases WHERE holder = ?", (holder,))}
            for store, order_id, data in tx.rows(
                    "SELECT o.store, o.id, o.data FROM orders o JOIN order_leases l"
                    " ON l.store = o.store AND l.order_id = o.id WHERE l.holder = ?", (holder,)):
                leased[(store, order_id)] = data
        return Claim(holder, until, [StoredEvent(*row) for row in rows], leased)

    def commit(self, claim: Claim, processed: Sequence[Processed], unprocessed: Sequence[Unprocessed],
               orders: dict[tuple[str, str], tuple[str, str | None]], now: float, max_attempts: int = 5) -> None:
        """Commit a claim's work in one transaction: the orders' new state (JSON text, folder), the
        decisions, the jobs (a key already stored is kept as it is), the events done; the events
        whose processing raised are counted and set aside (status poison) at ``max_attempts``; the
        lease ends.  LeaseLost (and nothing committed) if another worker took the orders meanwhile."""
        with self._transaction() as tx:
            # Locks in the claims' order -- the events, then the leases -- so a claim taking over an
            # expired lease waits for this commit (and then finds the events done) or has taken it
            # already (and this commit is refused): never both run them, never a deadlock.
            seqs = sorted(e.seq for e in claim.events)
            for start in range(0, len(seqs), 500):
                chunk = seqs[start:start + 500]
                tx.rows(f"SELECT seq FROM events WHERE seq IN ({', '.join('?' * len(chunk))}) ORDER BY seq"
                        f"{self.FOR_UPDATE}", chunk)
            self._check_lease(tx, claim.holder, len(claim.orders))
            self._write_orders(tx, orders, now)
            tx.many("INSERT INTO decisions (event_id, top_event_id, store, order_id, name, ruleset, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(d["event_id"], d["top_event_id"], d["store"], d["order_id"], d["name"], d["ruleset"], d["body"],
                      now) for p in processed for d in p.decisions])
            self._insert_jobs(tx, [job for p in processed for job in p.jobs], now)
            handed = [event for p in processed for event in p.events]
            if handed:
                self._insert_events(tx, handed, now)
            gone = [ref for p in processed for ref in p.removed if ref not in orders]
            if gone:
                tx.many("DELETE FROM orders WHERE store = ? AND id = ?", gone)
            tx.many("UPDATE events SET status = 'done', attempts = attempts + 1, processed_at = ?, ruleset = ?,"
                    " error = NULL WHERE seq = ?", [(now, p.ruleset, p.seq) for p in processed])
            tx.many("UPDATE events SET attempts = attempts + 1, error = ?, status = CASE WHEN attempts + 1 >= ?"
                    " THEN 'poison' ELSE 'pending' END WHERE seq = ?",
                    [(u.error, max_attempts, u.seq) for u in unprocessed])
            tx.run("DELETE FROM order_leases WHERE holder = ?", (claim.holder,))

    def _check_lease(self, tx: Tx, holder: str, orders: int) -> None:
        held = tx.rows(f"SELECT store, order_id FROM order_leases WHERE holder = ? ORDER BY store, order_id"
                       f"{self.FOR_UPDATE}", (holder,))
        if len(held) != orders:
            raise LeaseLost(f"the lease {holder} ended before its work was committed")

    def _write_orders(self, tx: Tx, orders: dict[tuple[str, str], tuple[str, str | None]], now: float) -> None:
        tx.many("INSERT INTO orders (store, id, folder, data, version, updated_at) VALUES (?, ?, ?, ?, 1, ?)"
                " ON CONFLICT (store, id) DO UPDATE SET folder = excluded.folder, data = excluded.data,"
                " version = orders.version + 1, updated_at = excluded.updated_at",
                [(store, order_id, folder, data, now) for (store, order_id), (data, folder) in orders.items()])

    def _insert_jobs(self, tx: Tx, jobs: Sequence[dict[str, Any]], now: float) -> None:
        tx.many("INSERT INTO jobs (key, kind, store, order_id, event_id, body, status, due_at, hops, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                [(j["key"], j["kind"], j["store"], j["order_id"], j["event_id"], j["body"], j.get("due_at", now),
                  j.get("hops", 0), now) for j in jobs])

    def release(self, holder: str) -> None:
        """End a lease without committing anything (its events stay pending)."""
        with self._transaction() as tx:
            tx.run("DELETE FROM order_leases WHERE holder = ?", (holder,))

    def renew(self, holders: Iterable[str], until: float) -> None:
        """Extend the leases of work still running."""
        holders = list(holders)
        if holders:
            with self._transaction() as tx:
                tx.many("UPDATE order_leases SET until = ? WHERE holder = ?", [(until, h) for h in holders])

    def clear_leases(self) -> int:
        """Drop every lease (a single daemon on its own database, starting after a crash)."""
        with self._transaction() as tx:
            return tx.run("DELETE FROM order_leases")

    # ---- jobs ----------------------------------------------------------------------------------
    def claim_job(self, holder: str, now: float, lease: float) -> JobClaim | None:
        """Lease the order of the oldest due job no one else is working on (a job never runs beside
        an event of its order) and return the job with the order's stored state."""
        until = now + lease
        with self._transaction() as tx:
            candidates = tx.rows(f"SELECT key, store, order_id FROM jobs e WHERE status = 'pending' AND due_at <= ?"
                                 f" AND NOT EXISTS ({_HELD}) ORDER BY due_at LIMIT 20{self.SKIP_LOCKED}",
                                 (now, now))
            for key, store, order_id in candidates:
                self._lease(tx, [(store, order_id)], holder, until, now)
                got = tx.one("SELECT 1 FROM order_leases WHERE store = ? AND order_id = ? AND holder = ?",
                             (store, order_id, holder))
                if got is None:
                    continue
                row = tx.one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = ? AND status = 'pending'", (key,))
                if row is None:
                    tx.run("DELETE FROM order_leases WHERE holder = ?", (holder,))
                    continue
                data = tx.one("SELECT data FROM orders WHERE store = ? AND id = ?", (store, order_id))
                return JobClaim(holder, until, StoredJob(*row), data[0] if data else None)
        return None

    def finish_job(self, claim: JobClaim, finish: JobFinish, now: float) -> list[bool]:
        """Record a job attempt's end, the order's new state and the jobs it scheduled (if any), and
        put the events it emitted in the inbox, in one transaction."""
        with self._transaction() as tx:
            tx.rows(f"SELECT key FROM jobs WHERE key = ?{self.FOR_UPDATE}", (claim.job.key,))  # claims' lock order
            self._check_lease(tx, claim.holder, 1)
            tx.run("UPDATE jobs SET status = ?, attempts = attempts + 1, due_at = ?, error = ?, detail = ?,"
                   " finished_at = ? WHERE key = ?",
                   (finish.status, finish.due_at if finish.due_at is not None else claim.job.due_at, finish.error,
                    finish.detail, now if finish.status != "pending" else None, claim.job.key))
            if finish.order is not None:
                self._write_orders(tx, {(claim.job.store, claim.job.order_id): finish.order}, now)
            self._insert_jobs(tx, finish.jobs, now)
            new = self._insert_events(tx, finish.events, now)
            tx.run("DELETE FROM order_leases WHERE holder = ?", (claim.holder,))
        return new

    def add_jobs(self, jobs: Sequence[dict[str, Any]], now: float) -> list[bool]:
        """Queue jobs that no event recorded (a callback's); for each, True if its key is new."""
        with self._transaction() as tx:
            keys = [j["key"] for j in jobs]
            before = {row[0] for row in tx.rows(f"SELECT key FROM jobs WHERE key IN ({', '.join('?' * len(keys))})",
                                                keys)} if keys else set()
            self._insert_jobs(tx, jobs, now)
        return [key not in before for key in keys]

    def job(self, key: str) -> StoredJob | None:
        with self._read() as tx:
            row = tx.one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE key = ?", (key,))
        return StoredJob(*row) if row else None

    def jobs(self, store: str | None = None, order_id: str | None = None) -> list[StoredJob]:
        where, params = _filters(store=store, order_id=order_id)
        with self._read() as tx:
            return [StoredJob(*row) for row in tx.rows(f"SELECT {_JOB_COLUMNS} FROM jobs{where} ORDER BY created_at,"
                                                       " key", params)]

    def next_job_due(self) -> float | None:
        with self._read() as tx:
            row = tx.one("SELECT min(due_at) FROM jobs WHERE status = 'pending'")
        return row[0] if row else None

    # ---- reads ---------------------------------------------------------------------------------
    def order(self, store: str, order_id: str) -> str | None:
        with self._read() as tx:
            row = tx.one("SELECT data FROM orders WHERE store = ? AND id = ?", (store, order_id))
        return row[0] if row else None

    def order_stores(self) -> list[str]:
        """The stores that have orders."""
        with self._read() as tx:
            return [row[0] for row in tx.rows("SELECT DISTINCT store FROM orders ORDER BY store")]

    def orders_in_folder(self, store: str, folder: str) -> list[str]:
        with self._read() as tx:
            return [row[0] for row in tx.rows("SELECT id FROM orders WHERE store = ? AND folder = ? ORDER BY id",
                                              (store, folder))]

    def decisions(self, store: str, order_id: str) -> list[str]:
        """An order's decisions (section 8 JSON text with the explanation), oldest first."""
        with self._read() as tx:
            return [row[0] for row in tx.rows("SELECT body FROM decisions WHERE store = ? AND order_id = ?"
                                              " ORDER BY seq", (store, order_id))]

    def decisions_of(self, event_id: str) -> list[str]:
        """The decisions an inbox event led to (its own and its cascade's), in processing order."""
        with self._read() as tx:
            return [row[0] for row in tx.rows("SELECT body FROM decisions WHERE top_event_id = ? ORDER BY seq",
                                              (event_id,))]

    def event(self, event_id: str) -> StoredEvent | None:
        with self._read() as tx:
            row = tx.one(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,))
        return StoredEvent(*row) if row else None

    def events(self, *, since: float | None = None, store: str | None = None, order_id: str | None = None,
               status: str | None = None, after_seq: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Inbox events in inbox order (a page of ``limit`` after ``after_seq``)."""
        where, params = _filters(store=store, order_id=order_id, status=status)
        where += (" AND" if where else " WHERE") + " seq > ?"
        params.append(after_seq)
        if since is not None:
            where += " AND received_at >= ?"
            params.append(since)
        with self._read() as tx:
            return [StoredEvent(*row) for row in tx.rows(f"SELECT {_EVENT_COLUMNS} FROM events{where}"
                                                         " ORDER BY seq LIMIT ?", params + [limit])]

    def iter_events(self, **filters: Any) -> Iterator[StoredEvent]:
        after = 0
        while True:
            page = self.events(after_seq=after, **filters)
            yield from page
            if len(page) < filters.get("limit", 1000):
                return
            after = page[-1].seq

    def counts(self) -> dict[str, int]:
        """Inbox events by status, and jobs pending (queue depths)."""
        with self._read() as tx:
            counts = {f"events_{status}": n for status, n in
                      tx.rows("SELECT status, count(*) FROM events GROUP BY status")}
            counts.update({f"jobs_{status}": n for status, n in
                           tx.rows("SELECT status, count(*) FROM jobs GROUP BY status")})
        return counts

    def requeue(self, event_id: str) -> bool:
        """Put a poison event back in the stream (after the cause is fixed)."""
        with self._transaction() as tx:
            return tx.run("UPDATE events SET status = 'pending', attempts = 0 WHERE id = ? AND status = 'poison'",
                          (event_id,)) == 1

    # ---- rulesets ------------------------------------------------------------------------------
    def save_ruleset(self, version: str, sources: str, now: float) -> None:
        """Record the ruleset just activated (its sources as JSON text)."""
        with self._transaction() as tx:
            tx.run("INSERT INTO rulesets (version, sources, activated_at) VALUES (?, ?, ?) ON CONFLICT (version)"
                   " DO UPDATE SET activated_at = excluded.activated_at", (version, sources, now))

    def ruleset_sources(self, version: str) -> str | None:
        """The sources (JSON text) of a ruleset that was active once."""
        with self._read() as tx:
            row = tx.one("SELECT sources FROM rulesets WHERE version = ?", (version,))
        return row[0] if row else None

    def last_ruleset(self) -> tuple[str, str] | None:
        """The version and sources of the ruleset activated last."""
        with self._read() as tx:
            row = tx.one("SELECT version, sources FROM rulesets ORDER BY activated_at DESC LIMIT 1")
        return (row[0], row[1]) if row else None

    # ---- shipments -------------------------------------------------------------------------------
    def add_shipment(self, store: str, order_id: str, tracking_number: str, data: str, now: float, *,
                     carrier: str | None = None, method: str | None = None, url: str | None = None) -> bool:
        """Record a shipment; False if the order has it already (the same shipment twice changes nothing)."""
        with self._transaction() as tx:
            return tx.run("INSERT INTO shipments (store, order_id, tracking_number, carrier, method, url, data,"
                          " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (store, order_id, tracking_number, carrier, method, url, data, now)) == 1


def _filters(**values: Any) -> tuple[str, list[Any]]:
    clauses = [(f"{name} = ?", value) for name, value in values.items() if value is not None]
    if not clauses:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in clauses), [v for _, v in clauses]
