"""The worker: claims inbox events (their orders leased), runs them through the active engine and
commits each claim's order changes, decisions, jobs and done marks in one transaction.

The events of one order run one at a time and in inbox order: a claim leases whole orders and
processes their pending events in sequence.  An event whose processing raises is counted and tried
again later; at ``max_attempts`` it is set aside (status ``poison``) with its error and the
order's stream goes on.  Nothing of an order's events in a claim is committed when one of them
raises (they run again, with the same ids and job keys, so nothing is repeated in effect).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ruledesk.engine.model.jobs import Job, job_row
from ruledesk.engine.model.order import dump_order, folder_of, parse_order_json, to_json_text
from ruledesk.engine.run.decision import Handoff, Result
from ruledesk.engine.run.engine import Engine
from ruledesk.engine.store.base import Claim, Inbound, Processed, StoredEvent, Unprocessed
from ruledesk.engine.store.sql import SqlStore

log = logging.getLogger("ruledesk.worker")

IMPORTED = "Order is Imported"


@dataclasses.dataclass
class Handled:
    """One inbox event as the worker handled it (for printing, logs and metrics)."""

    event: StoredEvent
    result: Result | None
    decisions: list[str]  # section 8 JSON text of each decision, with the compact explanation ("why")
    seconds: float
    error: str | None = None


def daemon_id() -> str:
    return uuid.uuid4().hex[:12]


class Worker:
    """Processes the inbox of ``store`` with the engine ``engine()`` returns when a claim starts
    (so a claim runs on one ruleset, whatever a reload swaps in meanwhile)."""

    def __init__(self, store: SqlStore, engine: Callable[[], Engine], *, name: str | None = None,
                 lease: float = 30.0, batch: int = 200, max_attempts: int = 5,
                 wall: Callable[[], float] = time.time,
                 on_handled: Callable[[list[Handled]], None] | None = None) -> None:
        self.store = store
        self.engine = engine
        self.name = name or daemon_id()
        self.lease = lease
        self.batch = batch
        self.max_attempts = max_attempts
        self.wall = wall
        self.on_handled = on_handled
        self._claims = itertools.count(1)
        self.current: str | None = None  # the holder of the claim in progress (its lease is renewed)

    def run_once(self) -> int:
        """Claim a batch, process it, commit it; the number of events handled (0: nothing pending)."""
        holder = f"{self.name}:{next(self._claims)}"
        self.current = holder
        try:
            claim = self.store.claim(holder, self.wall(), self.lease, limit=self.batch, orders=self.batch)
            if claim is None:
                return 0
            try:
                handled, processed, unprocessed, orders = self.process(claim)
                self.store.commit(claim, processed, unprocessed, orders, self.wall(), self.max_attempts)
            except BaseException:
                try:
                    self.store.release(holder)
                except Exception:  # the store is gone too: the lease ends by itself
                    log.debug("could not release %s", holder, exc_info=True)
                raise
        finally:
            self.current = None
        if self.on_handled is not None:
            self.on_handled(handled)
        return len(handled)

    def process(self, claim: Claim) -> tuple[list[Handled], list[Processed], list[Unprocessed],
                                             dict[tuple[str, str], tuple[str, str | None]]]:
        engine = self.engine()
        version = engine.ruleset.version
        live: dict[tuple[str, str], dict[str, Any]] = {}  # runtime orders as this claim leaves them
        done: dict[tuple[str, str], list[tuple[Handled, Processed, dict]]] = {}
        failed: dict[tuple[str, str], Handled] = {}
        gone: set[tuple[str, str]] = set()  # orders that left their store in this claim (moved): not stored
        for stored in claim.events:
            ref = (stored.store, stored.order_id)
            if ref in failed:
                continue  # the order's stream waits for its failed event
            started = time.perf_counter()
            try:
                current = live.get(ref)
                if current is None and ref not in gone and claim.orders.get(ref) is not None:
                    current = parse_order_json(claim.orders[ref])
                result = run_stored(engine, stored, current, dry_run=False)
                texts = [d.stored_text() for d in result.decisions]
                touched = {(r.store, r.order_id): order for r, order in result.orders.items() if r.order_id}
            except Exception as exc:  # a poison event: counted, tried again, set aside at max_attempts
                error = f"{type(exc).__name__}: {exc}"
                log.warning("event %s (order %s) failed: %s", stored.id, stored.order_id, error)
                failed[ref] = Handled(stored, None, [], time.perf_counter() - started, error)
                continue
            live.update(touched)
            decisions = [{"event_id": d.event_id, "top_event_id": stored.id, "store": d.store or stored.store,
                          "order_id": d.order_id or stored.order_id, "name": d.event, "ruleset": version,
                          "body": text} for d, text in zip(result.decisions, texts)]
            body = orjson.loads(stored.body) if stored.source in CHAINED else {}
            hops = int(body.get("hops", 0))
            jobs = [job_row(job, hops) for job in result.jobs]
            if body.get("then"):  # a job handler's continuation, due once this event's rules have run
                jobs.append(job_row(Job(**body["then"]), hops))
            handed = []
            arrived: set[int] = set()  # the orders (by identity) whose first handed-on event is listed
            for handoff in result.handoffs:
                if hops + handoff.depth > engine.max_depth:  # a chain across orders and stores ends too
                    log.warning("event %s: %r for order %s of %r not handed on: chain limit %d reached", stored.id,
                                handoff.name, handoff.order.get("id"), handoff.store, engine.max_depth)
                    key = (handoff.store, str(handoff.order.get("id")))
                    if handoff.order.get("id") is not None and key not in touched:
                        # the order is there, its event not run (as in a cascade): a move is never lost
                        touched[key] = live[key] = handoff.order
                    continue
                handed.append(handed_on(handoff, hops, arrives=id(handoff.order) not in arrived))
                arrived.add(id(handoff.order))
            removed = [(r.store, r.order_id) for r in result.removed if r.order_id]
            gone.difference_update(touched)
            for key in removed:
                touched.pop(key, None)
                live.pop(key, None)
                gone.add(key)
            done.setdefault(ref, []).append((Handled(stored, result, texts, time.perf_counter() - started),
                                             Processed(stored.seq, version, decisions, jobs, handed, removed),
                                             touched))
        handled: list[Handled] = []
        processed: list[Processed] = []
        orders: dict[tuple[str, str], tuple[str, str | None]] = {}
        for ref, entries in done.items():
            if ref in failed:  # the order's earlier events of this claim run again with it
                continue
            for one, record, touched in entries:
                handled.append(one)
                processed.append(record)
                for key in touched:
                    if key in live:  # else a later event of the claim moved it away (deleted at commit)
                        orders[key] = live[key]
        unprocessed = [Unprocessed(h.event.seq, h.error or "") for h in failed.values()]
        handled.extend(failed.values())
        handled.sort(key=lambda h: h.event.seq)
        return handled, processed, unprocessed, {ref: (to_json_text(order), folder_of(order))
                                                 for ref, order in orders.items()}

CHAINED = ("job", "rules")  # sources of inbox events that count hops: a job's events, handed-on events


def handed_on(handoff: Handoff, hops: int, *, arrives: bool = False) -> Inbound:
    """The inbox entry of an event the rules emitted for another order (a split piece, a copy in
    another store): it carries that order, for a store that does not hold it yet, and how many
    hops deep the chain is (``hops`` of the event that emitted it plus the cascade's depth).
    ``arrives``: the first event of that order the cascade emitted, which brings the order into
    its store (it runs on the order it carries, replacing one the store holds with that id, as in a
    cascade); the events after it run on the order as the store holds it then."""
    order = dump_order(handoff.order)
    data = {"event": handoff.name, "order": order, "payload": handoff.payload, "store": handoff.store,
            "id": handoff.id, "hops": hops + handoff.depth}
    if arrives:
        data["arrives"] = True
    return Inbound(handoff.id, handoff.store, str(order.get("id")), handoff.name, to_json_text(data), source="rules")


def run_stored(engine: Engine, stored: StoredEvent, current: dict[str, Any] | None, *, dry_run: bool) -> Result:
    """Run an inbox event on ``current``, the runtime order the store holds (None: not stored): a
    button press or a scheduled run on that order; "Order is Imported" (or any event for an order
    not stored) on the order it carries; any other event on the stored order.  The worker runs it
    for real, ``ruledesk replay`` in a dry run."""
    body = orjson.loads(stored.body)
    store = body.get("store") or stored.store
    if stored.kind in ("button", "schedule"):
        order = dump_order(current) if current is not None else {"id": stored.order_id}
        if stored.kind == "button":
            return engine.press(body["button"], order, store=store, event_id=stored.id, dry_run=dry_run)
        return engine.run_schedule(body["schedule"], order, store=store, event_id=body["period"], dry_run=dry_run)
    if current is None or stored.name == IMPORTED or (stored.source == "rules" and body.get("arrives")):
        event = engine.event_json(stored.body)
    else:
        event = engine.event_for(body, current)
    return engine.process(event, validated=True, dry_run=dry_run)

