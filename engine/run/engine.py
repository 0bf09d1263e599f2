"""The Engine: runs a compiled Ruleset against one incoming event and everything it emits; returns a Result (no I/O)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel, ValidationError

from ruledesk.engine.lang.compiler import CompiledRule, button_key, schedule_key
from ruledesk.engine.lang.ruleset import Ruleset, build_ruleset, load_ruleset
from ruledesk.engine.lang.templates import UserTemplate
from ruledesk.engine.model.catalogue import FOLLOWUPS, ActionSpec, Catalogue, EventSpec, Followup
from ruledesk.engine.model.context import ActionContext, ActionError, Emitted, Event, utcnow
from ruledesk.engine.model.jobs import Job, job_key
from ruledesk.engine.model.order import (ORDER_STRUCT, OrderError, bounded_value, load_json, order_from_struct,
                                          parse_order)
from ruledesk.engine.model.settings import StoreSettings, store_settings
from ruledesk.engine.run.decision import (_MISSED, _ONE, _SKIPPED, ActionRecord, Decision, EmittedEvent, Handoff,
                                          OrderRef, Result)
from ruledesk.engine.run.explain import DECIDING, FULL, LEVELS, OFF, Recorder
from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import closest


class EventError(ValueError):
    """An incoming event cannot be processed (unknown event or store, malformed order or payload)."""


@dataclass
class _Pending:
    name: str
    payload: dict[str, Any]
    order: dict[str, Any]
    store: StoreSettings
    store_view: dict[str, Any]
    depth: int
    chain: tuple[str, ...]
    event_id: str
    cause: str | None = None
    plan_key: str | None = None  # a button's or a schedule's rules instead of the event's


class _Cascade:
    """The state of one incoming event's cascade: the result being built and the firing budget."""

    __slots__ = ("result", "budget", "dry_run", "explain", "firing_limit_hit", "sharing")

    def __init__(self, result: Result, budget: int, dry_run: bool, explain: str) -> None:
        self.result = result
        self.budget = budget
        self.dry_run = dry_run
        self.explain = explain
        self.firing_limit_hit = False
        # Decisions showing a live order (by the order's id()): frozen before an action changes it.
        self.sharing: dict[int, list[Decision]] = {}

    def share(self, decision: Decision, order: dict[str, Any]) -> None:
        """Let ``decision`` show the live ``order`` until an action of a later event may change it."""
        decision._share(order)
        self.sharing.setdefault(id(order), []).append(decision)

    def changing(self, order: dict[str, Any]) -> None:
        """``order`` may be about to change: the decisions showing it keep it as it is (copy on write)."""
        waiting = self.sharing.pop(id(order), None)
        if waiting:
            for decision in waiting:
                decision._freeze()


class _Runner:
    """Runs the actions of one fired rule: the object generated ``act`` functions call."""

    __slots__ = ("engine", "rule", "pending", "order", "event", "records", "emitted", "stopped", "changed",
                 "cascade", "event_ns", "now", "touched", "calls", "left")

    def __init__(self, engine: "Engine", rule: CompiledRule, pending: _Pending, event: Event, event_ns,
                 cascade: _Cascade, now) -> None:
        self.engine = engine
        self.rule = rule
        self.pending = pending
        self.order = pending.order
        self.event = event
        self.event_ns = event_ns
        self.cascade = cascade
        self.now = now
        self.records: list[ActionRecord] = []
        self.emitted: list[Emitted] = []
        self.stopped = False
        self.changed = False
        self.touched: set[str] | None = set()  # top-level order fields changed; None: can't tell
        self.calls: dict[int, int] = {}  # how many times each action slot ran in this firing
        self.left: str | None = None  # the store the order moved to

    def call(self, slot: int, params: dict[str, Any], item: dict[str, Any] | None,
             binders: dict[str, Any] | None = None) -> None:
        """Run one action: render its templates (with ``order``, ``item``, ``event``, ``store`` and the
        enclosing ``for`` binders by name), validate its parameters, then run it on the order or,
        for an external action, record its job."""
        spec: ActionSpec = self.rule.slots[slot].spec
        occurrence = self.calls[slot] = self.calls.get(slot, 0) + 1
        record = ActionRecord(self.rule.name, spec.name, params, "done")
        self.records.append(record)
        for key, value in params.items():
            if isinstance(value, UserTemplate):
                context = {"order": self.order, "item": item, "event": self.event_ns, "store": self.pending.store_view}
                if binders:
                    context.update(binders)
                try:
                    params[key] = value.render(context)
                except Exception as exc:  # a template that fails at run time fails its action, never the engine
                    record.status, record.error = "failed", f"template {key!r}: {exc}"
                    record.params = {k: v.source if isinstance(v, UserTemplate) else v for k, v in params.items()}
                    return
        try:
            # what model_validate does, without its keyword handling (half the cost for a small model)
            model = spec.params.__pydantic_validator__.validate_python(params)
        except ValidationError as exc:
            record.status, record.error = "failed", _validation_message(exc)
            return
        if spec.run is None and spec.job is None:
            record.status, record.error = "failed", f'action "{spec.name}" has no implementation'
            return
        ctx = ActionContext(self.order, self.event, self.pending.store_view, item=item,
                            clock=self.engine.clock if self.now is None else self._now)
        detail = None
        if spec.run is not None:
            if self.cascade.sharing:
                self.cascade.changing(self.order)  # earlier decisions on this order keep their state
            try:
                detail = spec.run(ctx, model)
            except ActionError as exc:
                record.status, record.error = "failed", str(exc)
                return
            except Exception as exc:  # a broken action fails itself, never the engine (or a daemon) with it
                record.status, record.error = "failed", f"{spec.name} failed unexpectedly: {type(exc).__name__}: {exc}"
                self.changed, self.touched = True, None  # it may have changed anything before it failed
                return
        record.detail = detail or None
        if ctx.changed or (spec.mutates_order and spec.job is None):
            self.changed = True
            if spec.touches is None:
                self.touched = None
            elif self.touched is not None:
                self.touched.update(spec.touches)
        if ctx.emitted:
            problem = self.engine._check_emitted(spec, ctx.emitted)
            if problem is not None:
                record.status, record.error = "failed", problem
                return
            self.emitted.extend(ctx.emitted)
        if ctx.left is not None:
            self.left = ctx.left
        if ctx.stopped:
            self.stopped = True  # the rule's other actions still run; the next rules do not
        if spec.job is not None:
            job = Job(spec.job, job_key(self.pending.event_id, self.rule.name, slot, occurrence), spec.name,
                      self.rule.name, self.pending.event_id, _order_id(self.order), self.pending.store.name,
                      model.model_dump(mode="json"))
            record.job = job
            record.status = "dry-run" if self.cascade.dry_run else "scheduled"
            self.cascade.result.jobs.append(job)

    def _now(self) -> _dt.datetime:
        return self.now  # the moment the event's rules were evaluated at (a rule reading ``now``)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)


class Engine:
    """Runs rules.  ``Engine.from_paths("rules.d").process(event)`` returns the event's ``Result``.

    ``process`` does no I/O: order actions change in-memory orders, external actions record jobs
    that a job runner performs once the result is committed (``ruledesk.engine.jobs``).  Each
    order in a cascade carries its own store, whose settings its rules see as ``store``.

    Thread-safe: the ruleset is immutable and each ``process`` call keeps its state on its own
    stack; concurrent calls on different orders need no lock.  ``reload`` swaps the ruleset
    atomically; an event in flight finishes on the ruleset it started with.
    """

    def __init__(self, ruleset: Ruleset, *, events: Catalogue[EventSpec] | None = None,
                 actions: Catalogue[ActionSpec] | None = None, stores: Iterable[StoreSettings] | None = None,
                 dry_run: bool = False, clock: Callable[[], _dt.datetime] | None = None, max_depth: int = 10,
                 max_firings: int = 100, explain: str = DECIDING, config: Any = None, handoff: bool = False,
                 followups: dict[str, list[Followup]] | None = None) -> None:
        self.ruleset = ruleset
        # Events for other orders (split pieces, copies) are left to the caller (Result.handoffs)
        # rather than processed in the cascade: the daemon runs them under their own order's lease.
        self.handoff = handoff
        self.config = config  # the configuration the engine was built from (job handlers read email, webhooks)
        self.explain = explain
        self.events = events if events is not None else default_events()
        self.actions = actions if actions is not None else default_actions()
        # by the event's own spelling (events are validated to it): no case-folding per event
        self.followups = {self.events[name].name: list(fns)
                          for name, fns in (FOLLOWUPS if followups is None else followups).items() if name in self.events}
        self.stores: dict[str, StoreSettings] = {store.name: store for store in stores or ()}
        # the store of an event that names none: the configuration's default_store, else the only one
        default = getattr(config, "default_store", None)
        self.default_store = self.stores.get(default) if default is not None else (
            next(iter(self.stores.values())) if len(self.stores) == 1 else None)
        self.dry_run = dry_run
        self.clock = clock or utcnow
        self.max_depth = max_depth
        self.max_firings = max_firings
        self._swap = threading.Lock()

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def from_paths(cls, *paths: str | os.PathLike[str], events: Catalogue[EventSpec] | None = None,
                   actions: Catalogue[ActionSpec] | None = None, **options: Any) -> "Engine":
        events = events if events is not None else default_events()
        actions = actions if actions is not None else default_actions()
        ruleset = load_ruleset(paths or ("rules.d",), events, actions, trace=options.get("explain") == FULL)
        return cls(ruleset, events=events, actions=actions, **options)

    @classmethod
    def from_source(cls, text: str, path: str = "<string>.rules", *, events: Catalogue[EventSpec] | None = None,
                    actions: Catalogue[ActionSpec] | None = None, **options: Any) -> "Engine":
        events = events if events is not None else default_events()
        actions = actions if actions is not None else default_actions()
        ruleset = build_ruleset({path: text}, events, actions, trace=options.get("explain") == FULL)
        return cls(ruleset, events=events, actions=actions, **options)

    def reload(self, *paths: str | os.PathLike[str]) -> Ruleset:
        """Build a new ruleset from ``paths`` and swap it in; on error the current one stays (RulesetError)."""
        ruleset = load_ruleset(paths, self.events, self.actions, trace=self.explain == FULL)
        with self._swap:
            self.ruleset = ruleset
        return ruleset

    # ---- input --------------------------------------------------------------------------
    def event(self, data: Event | dict[str, Any]) -> Event:
        """Validate an incoming event: known name, a valid order, a known store, a payload of the
        event's model.  An event without an id gets one derived from its content."""
        return self._event(data, None)

    def event_json(self, text: str | bytes, *, load: Callable[[str | bytes], Any] = load_json) -> Event:
        """Validate an incoming event from the JSON text of one line (an event, or a bare order taken
        as "Order is Imported"): ``self.event(load(text))``, the same Event or the same exception,
        faster.  The order is decoded by the typed path (``ORDER_STRUCT``, inside an event envelope
        or bare) and validated by its post-pass; whatever that path refuses -- invalid JSON, an
        unexpected type or key, a value the model refuses -- goes ``self.event(load(text))``, so
        every error is that path's.  ``load`` reads the line when needed (default ``load_json``;
        ``ruledesk run`` passes its own, which words its refusals).  An event without an id needs
        the raw order for the derived id: the line is also read by ``load`` then."""
        try:
            typed = _typed_event(text, load)
        except Exception:  # anything the typed path does not take: the dict path decides
            typed = None
        if typed is None:
            return self._event(load(text), None)
        return self._event(*typed)

    def event_for(self, data: dict[str, Any], order: dict[str, Any]) -> Event:
        """Validate an incoming event (name, store, payload) that runs on ``order``, an order in the
        runtime representation already (the state a store keeps of it): ``data``'s own order, if
        any, is not looked at.  The daemon's worker runs stored events on stored orders with it."""
        return self._event({**data, "order": {}}, order)

    def _event(self, data: Event | dict[str, Any], order: dict[str, Any] | None) -> Event:
        """``event(data)``; ``order``: the order of ``data`` already validated (by the typed path)."""
        try:
            event = data if isinstance(data, Event) else Event.from_dict(data)
        except ValueError as exc:
            raise EventError(str(exc)) from exc
        spec = self.events.get(event.name)
        if spec is None:
            suggestions = self.events.suggest(event.name)
            hint = f" (did you mean {suggestions[0]!r}?)" if suggestions else ""
            raise EventError(f"unknown event {event.name!r}{hint}")
        if order is None:
            try:
                order = parse_order(event.order)
            except OrderError as exc:
                raise EventError(str(exc)) from exc
        store = self.store(event.store)
        payload = _validate_payload(spec, event.payload)
        event_id = event.id if event.id is not None else derived_event_id(spec.name, event.order, event.payload,
                                                                          store.name)
        validated = Event(spec.name, order, payload, store, event_id)
        validated._namespace = {"name": spec.name, **payload}
        validated._store_view = store.view()
        return validated

    def store(self, given: StoreSettings | dict[str, Any] | str | None) -> StoreSettings:
        """The settings of the store an event names: a configured store by name (an unknown name is
        an EventError when stores are configured), or settings given with the event.  An event that
        names no store is for the configuration's ``default_store``, or for the configured store when
        there is exactly one."""
        if not given and self.default_store is not None:
            return self.default_store
        if isinstance(given, str) and self.stores:
            found = self.stores.get(given)
            if found is None:
                near = closest(given, list(self.stores))
                raise EventError(f"unknown store {given!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                                 + f"; configured stores: {', '.join(sorted(self.stores))}")
            return found
        if isinstance(given, dict):
            if self.stores:
                raise EventError("stores are configured: an event names one of them "
                                 f"({', '.join(sorted(self.stores))}), it cannot give store settings")
            podos = given.get("podos")
            if isinstance(given.get("api_key"), str) or (isinstance(podos, dict) and isinstance(podos.get("token"), str)):
                # an event is input, not configuration: no env:/file: reference is resolved for it (no I/O)
                raise EventError("an event's store cannot carry secrets (api_key, podos.token): configure the store")
        try:
            return store_settings(given)
        except ValidationError as exc:
            raise EventError(f"invalid store: {_validation_message(exc)}") from None

    # ---- matching and processing ----------------------------------------------------------
    def match(self, data: Event | dict[str, Any], *, validated: bool = False) -> list[str]:
        """Names of the rules whose conditions hold for this event and order, without running anything."""
        event = data if validated and data.__class__ is Event else self.event(data)
        plan = self.ruleset.plans.get(event.name)
        if plan is None:
            return []
        namespace, store = event._namespace, event._store_view
        if namespace is None or store is None:  # an Event the caller built
            namespace, store = event.namespace, event.store
            store = store if isinstance(store, dict) else store.view()
        hits = plan.match(event.order, namespace, store, self.clock() if plan.uses_now else None)
        names = plan.names
        return [names[i] for i in hits]

    def process(self, data: Event | dict[str, Any], *, dry_run: bool | None = None,
                explain: str | None = None, validated: bool = False) -> Result:
        """Process one incoming event and every event it emits; the Result holds a decision per
        processed event, the orders as they end, the jobs recorded and the events emitted.

        ``explain`` ("off", "deciding", "full"; default: the engine's) says how much of the why
        each decision records: "deciding" (the default) keeps, for every rule that did not fire,
        the clause that decided it and the values it compared; "full" keeps every value every
        condition computed (the ruleset must be built with ``trace=True``).  ``validated=True``
        takes an Event that ``Engine.event`` returned as it is (no second validation)."""
        event = data if validated and data.__class__ is Event and data._store_view is not None else self.event(data)
        return self._cascade(event, None, dry_run, explain)

    def press(self, label: str, data: dict[str, Any], *, store: StoreSettings | dict[str, Any] | str | None = None,
              dry_run: bool | None = None, explain: str | None = None, event_id: str | None = None) -> Result:
        """Run the rules of ``when button "label"`` on one order (Order Desk's Custom Button)."""
        plan = self.ruleset.plan(button_key(label))
        if plan is None:
            labels = sorted({r.trigger.label for r in self.ruleset.rules if isinstance(r.trigger, ast.ButtonTrigger)})
            near = closest(label, labels)
            raise EventError(f"no enabled rule has button {label!r}"
                             + (f" (did you mean {near[0]!r}?)" if near else ""))
        name = f'Button "{plan.rules[0].trigger.label}"'
        return self._cascade(self._trigger_event(name, data, store, event_id), plan, dry_run, explain)

    def run_schedule(self, rule: str, data: dict[str, Any], *,
                     store: StoreSettings | dict[str, Any] | str | None = None, dry_run: bool | None = None,
                     explain: str | None = None, event_id: str | None = None) -> Result:
        """Run the scheduled rule ``rule`` (``when every D in folder "F"``) on one order; the caller
        (the scheduler) picks the orders of the folder and, for exactly-once runs, gives the id of
        the period (e.g. ``"Nightly@2026-11-23"``): the order's event id is that id, its store and
        its order id (``Nightly@2026-11-23/acme/1001``), so every order of a period has its own ids
        and job keys, and the same period of the same order always the same."""
        plan = self.ruleset.plan(schedule_key(rule))
        if plan is None:
            raise EventError(f"no enabled scheduled rule is named {rule!r}")
        trigger = plan.rules[0].trigger
        name = f'Every {trigger.every.raw} in folder "{trigger.folder}"'
        event = self._trigger_event(name, data, store, None)
        if event_id is not None:
            event.id = f"{event_id}/{event.store.name}/{_order_id(event.order)}"
        return self._cascade(event, plan, dry_run, explain)

    def _trigger_event(self, name: str, order: dict[str, Any], store: StoreSettings | dict[str, Any] | str | None,
                       event_id: str | None) -> Event:
        try:
            parsed = parse_order(order)
        except OrderError as exc:
            raise EventError(str(exc)) from exc
        settings = self.store(store)
        return Event(name, parsed, {}, settings,
                     event_id if event_id is not None else derived_event_id(name, order, {}, settings.name))

    def _cascade(self, event: Event, plan, dry_run: bool | None, explain: str | None) -> Result:
        ruleset = self.ruleset
        dry = self.dry_run if dry_run is None else dry_run
        explain = self.explain if explain is None else explain
        if explain not in LEVELS:
            raise ValueError(f"explain must be one of {', '.join(LEVELS)}")
        if explain == FULL and not ruleset.traced:
            raise ValueError("a full explanation needs a ruleset built with trace=True "
                             "(Engine.from_paths(..., explain='full'))")
        first_key = None if plan is None else next((key for key, p in ruleset.plans.items() if p is plan), None)
        store: StoreSettings = event.store
        result = Result(event.id)
        result.orders[OrderRef(store.name, _order_id(event.order))] = event.order
        result.stores[store.name] = store
        cascade = _Cascade(result, self.max_firings, dry, explain)
        queue: deque[_Pending] = deque([_Pending(event.name, event.payload, event.order, store, store.view(),
                                                 0, (event.name,), event.id, None, first_key)])
        while queue:
            pending = queue.popleft()
            decision, emitted = self._run_event(ruleset, pending, cascade)
            result.decisions.append(decision)
            for number, (rule_name, item) in enumerate(emitted, 1):
                target = pending if item.order is None else None
                order = pending.order if item.order is None else item.order
                item_store = pending.store if item.store is None else self.store(item.store)
                ref = OrderRef(item_store.name, _order_id(order))
                if target is None and self.handoff:  # another order: run under its own lease, by the caller
                    event_id = f"{pending.event_id}.{number}"
                    spec = self.events.get(item.name)
                    deep_enough = pending.depth + 1 > self.max_depth
                    result.events.append(EmittedEvent(event_id, spec.name, ref, item.payload, rule_name, False))
                    if deep_enough:
                        decision.stopped = {"reason": f"depth limit {self.max_depth} reached; {spec.name!r} for "
                                                      f"order {ref.order_id} of {ref.store!r} was not handed on",
                                            "chain": list(pending.chain + (rule_name, spec.name))}
                        if ref not in result.orders:  # as without handoff: the order is there, its event not run
                            if ref in result.removed:  # (a moved order is never lost on the way)
                                result.removed.remove(ref)
                            result.orders[ref] = order
                    else:
                        result.handoffs.append(Handoff(event_id, spec.name, item_store.name, order, item.payload,
                                                       pending.depth + 1))
                    result.stores.setdefault(item_store.name, item_store)
                    continue
                processed = not cascade.firing_limit_hit and pending.depth + 1 <= self.max_depth
                if target is None and ref in result.removed:  # back in a store it left earlier in the cascade
                    result.removed.remove(ref)
                if (processed or ref not in result.orders) and ref not in result.removed:
                    # the order as the last event processed on it leaves it
                    result.orders[ref] = order
                result.stores.setdefault(item_store.name, item_store)
                event_id = f"{pending.event_id}.{number}"
                spec = self.events.get(item.name)
                chain = pending.chain + (rule_name, spec.name)
                result.events.append(EmittedEvent(event_id, spec.name, ref, item.payload, rule_name, processed))
                if cascade.firing_limit_hit:
                    continue
                if not processed:
                    decision.stopped = {"reason": f"depth limit {self.max_depth} reached; "
                                                  f"{spec.name!r} was not processed", "chain": list(chain)}
                    continue
                queue.append(_Pending(spec.name, item.payload, order, item_store,
                                      pending.store_view if target is not None else item_store.view(),
                                      pending.depth + 1, chain, event_id, rule_name))
            if cascade.firing_limit_hit:
                cut = {waiting.event_id for waiting in queue}  # emitted earlier, now never processed
                result.events = [dataclasses.replace(e, processed=False) if e.id in cut else e for e in result.events]
                queue.clear()
        return result

    def _check_emitted(self, spec: ActionSpec, emitted: list[Emitted]) -> str | None:
        """Why the events an action emitted cannot be processed (an unknown or undeclared event, a
        bad payload, an unknown store), or None; valid payloads are replaced by their validated form."""
        for item in emitted:
            event = self.events.get(item.name)
            if event is None:
                return f'{spec.name} emitted an unknown event "{item.name}"'
            if event.name.casefold() not in {name.casefold() for name in spec.emits}:
                return (f'{spec.name} emitted "{event.name}", which it does not declare '
                        f"(it declares: {', '.join(spec.emits) or 'none'})")
            item.name = event.name
            try:
                item.payload = _validate_payload(event, item.payload)
            except EventError as exc:
                return f"{spec.name} emitted {exc}"
            if item.store is not None:
                if item.order is None:  # the store of another order: the emitting order stays in its own
                    return f'{spec.name} emitted "{event.name}" for store {item.store!r} without the order it is for'
                if not isinstance(item.store, str):
                    return f'{spec.name} emitted "{event.name}" for a store that is not a name: {type(item.store).__name__}'
                if self.stores and item.store not in self.stores:
                    return f'{spec.name} emitted "{event.name}" for an unknown store {item.store!r}'
                try:
                    self.store(item.store)
                except EventError as exc:
                    return f'{spec.name} emitted "{event.name}" for an {exc}'
        return None

    def _run_event(self, ruleset: Ruleset, pending: _Pending, cascade: _Cascade
                   ) -> tuple[Decision, list[tuple[str, Emitted]]]:
        order = pending.order
        decision = Decision(pending.name, _order_id(order), ruleset.version, depth=pending.depth,
                            event_id=pending.event_id, cause=pending.cause, dry_run=cascade.dry_run,
                            sources=ruleset.sources, store=pending.store.name)
        emitted: list[tuple[str, Emitted]] = []
        removed = cascade.result.removed
        if removed and OrderRef(pending.store.name, _order_id(order)) in removed:  # it moved to another store
            decision.stopped = {"reason": "the order moved to another store; no rule ran", "chain": list(pending.chain)}
            cascade.share(decision, order)
            return decision, emitted
        plan = ruleset.plan(pending.plan_key or pending.name)
        if plan is not None:
            left = self._evaluate(plan, pending, cascade, decision, emitted)
            if left is not None:
                ref = OrderRef(pending.store.name, _order_id(order))
                removed.append(ref)
                cascade.result.orders.pop(ref, None)
        for fn in self.followups.get(pending.name, ()):
            for job in fn(order, pending.payload, pending.store.name, pending.event_id):
                status = "dry-run" if cascade.dry_run else "scheduled"
                decision.followups.append(ActionRecord(job.rule, job.action, dict(job.params), status, job=job))
                cascade.result.jobs.append(job)
        cascade.share(decision, order)  # no copy: a later event's action copies it before changing it
        return decision, emitted

    def _evaluate(self, plan, pending: _Pending, cascade: _Cascade, decision: Decision,
                  emitted: list[tuple[str, Emitted]]) -> str | None:
        """Run the event's rules in order; each condition sees the order as the earlier rules left it.

        While no action has changed a field the conditions read, the shared ``match`` result stays
        valid; after such a change the event is matched again and the new result is used from the
        next rule on.  A full trace evaluates every rule on its own.  With explanations on, every rule
        that does not fire gets its deciding clause, computed against the very state it saw."""
        now = self.clock() if plan.uses_now else None
        order, store, explain = pending.order, pending.store_view, cascade.explain
        event_ns = {"name": pending.name, **pending.payload}
        event = Event(pending.name, order, pending.payload, store, pending.event_id)  # secrets stay out
        rules = plan.rules
        log = decision._log
        missed: dict[int, int] = {}
        batch = explain != FULL
        if explain == DECIDING:
            hits, missed, snapshot = plan.match_why(order, event_ns, store, now)
        elif explain == OFF:
            hits = plan.match(order, event_ns, store, now)
        position = 0
        index = 0
        while index < len(rules):
            if batch:
                upcoming = hits[position] if position < len(hits) else len(rules)
                position += 1
                if explain == DECIDING and upcoming > index:
                    log.append((_MISSED, plan, index, upcoming, missed, snapshot, order, event_ns, store))
                if upcoming >= len(rules):
                    break
                index = upcoming
            else:  # a full trace: every rule on its own
                rule = rules[index]
                recorder = Recorder()
                holds = bool(rule.trace(order, event_ns, store, now, recorder.value, recorder.element))
                if not holds:
                    why = rule.why(order, event_ns, store, now)
                    log.append((_ONE, rule, False, why, recorder.entries))
                    index += 1
                    continue
                trace = recorder.entries
            rule = rules[index]
            if cascade.budget <= 0:
                cascade.firing_limit_hit = True
                decision.stopped = {"reason": f"firing limit {self.max_firings} reached; rule {rule.name!r} "
                                              "and everything after it did not run",
                                    "chain": list(pending.chain) + [rule.name]}
                if explain != OFF:
                    log.append((_SKIPPED, rules, index, "not run: firing limit"))
                return
            cascade.budget -= 1
            runner = _Runner(self, rule, pending, event, event_ns, cascade, now)
            rule.act(runner, order, event_ns, store, now)
            decision.fired.append(rule.name)
            decision.actions.extend(runner.records)
            if explain != OFF:
                log.append((_ONE, rule, True, None, trace if explain == FULL else None))
            for item in runner.emitted:
                emitted.append((rule.name, item))
                decision.emitted.append(item.name)
            index += 1
            if runner.stopped:
                if explain != OFF:
                    note = (f"not evaluated: the order moved to store {runner.left!r}" if runner.left is not None
                            else f"not evaluated: {rule.name!r} stopped processing")
                    log.append((_SKIPPED, rules, index, note))
                return runner.left
            if batch and runner.changed and (runner.touched is None or plan.reads is None
                                             or runner.touched & plan.reads):
                # Later conditions must see the order as this rule left it: match again (indexed,
                # cheaper than the rules' own functions, which then need no compiling at all).  A
                # full trace (not batch) evaluates every rule on its own anyway.
                if explain == DECIDING:
                    hits, missed, snapshot = plan.match_why(order, event_ns, store, now)
                else:
                    hits = plan.match(order, event_ns, store, now)
                position = bisect_left(hits, index)


def derived_event_id(name: str, order: Any, payload: Any, store: str) -> str:
    """The id of an event that came without one: a hash of its content, so the same event processed
    twice gets the same id (and its jobs the same keys).  The daemon gives events ids at intake."""
    content = [name, store, order, payload]
    try:  # the same text as the json path below (but for a float's spelling), in a fraction of the time
        data = orjson.dumps(content, default=str, option=_ID_OPTIONS)
    except TypeError:  # what orjson refuses: an int past 64 bits, a lone surrogate, a key that is not a str
        data = json.dumps(content, sort_keys=True, default=str, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8", "surrogatepass")
    return "evt-" + hashlib.sha256(data).hexdigest()[:24]


_ID_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


# An event line as the typed path decodes it: the envelope's types are Event.from_dict's (an event
# name, an order, a payload object or null, a store name or object or null, an id); any other key
# (which from_dict would ignore, but msgspec would skip without reading it as json does) is refused.
_EventJSON = msgspec.defstruct("EventJSON", [
    ("event", str), ("order", ORDER_STRUCT), ("payload", dict[str, Any] | None, None),
    ("store", str | dict[str, Any] | None, None), ("id", str | int | None, None)], forbid_unknown_fields=True)
_decode_event = msgspec.json.Decoder(_EventJSON, float_hook=Decimal).decode
_decode_order = msgspec.json.Decoder(ORDER_STRUCT, float_hook=Decimal).decode


def _typed_event(text: str | bytes, load: Callable[[str | bytes], Any]) -> tuple[Event | dict[str, Any],
                                                                                dict[str, Any]] | None:
    """What ``Engine._event`` takes for an event line (an Event as ``Event.from_dict`` builds it, or
    the line's dict when the event id must be derived from the raw order) and the order validated
    by the typed path; None or an exception where that path gives up."""
    if ('"event"' if text.__class__ is str else b'"event"') in text:
        envelope = _decode_event(text)
        order = order_from_struct(envelope.order)
        event_id = envelope.id
        if event_id is None:
            return load(text), order
        if event_id.__class__ is int:
            if event_id.bit_length() > 63:
                return None  # str() of a huge int may refuse: the dict path words it
            event_id = str(event_id)
        return Event(envelope.event, {}, envelope.payload or {}, envelope.store or {}, event_id), order
    order = order_from_struct(_decode_order(text))  # a bare order: no "event" key (the struct has none)
    return load(text), order


def _validate_payload(spec: EventSpec, payload: dict[str, Any]) -> dict[str, Any]:
    if payload.__class__ is dict and not payload:  # most events carry nothing: validated once per model
        empty = _EMPTY_PAYLOADS.get(spec.payload)
        if empty is not None:
            return dict(empty) if all(type(v) in _IMMUTABLE for v in empty.values()) else copy.deepcopy(empty)
        empty = _validate_payload_model(spec, {})  # an EventError (required fields) is raised, never kept
        if _pure_defaults(spec.payload):
            _EMPTY_PAYLOADS[spec.payload] = copy.deepcopy(empty)
        return empty
    return _validate_payload_model(spec, payload)


_EMPTY_PAYLOADS: dict[type[BaseModel], dict[str, Any]] = {}  # payload model -> what it makes of {}
_IMMUTABLE = frozenset({str, int, float, bool, type(None), Decimal, _dt.datetime})


def _pure_defaults(model: type[BaseModel]) -> bool:
    """Whether the model makes the same of ``{}`` every time: no default factory (a timestamp, a
    uuid), no validator or serializer of its own (which could do anything)."""
    decorators = model.__pydantic_decorators__
    return (all(f.default_factory is None for f in model.model_fields.values())
            and not any((decorators.validators, decorators.field_validators, decorators.root_validators,
                         decorators.field_serializers, decorators.model_serializers, decorators.model_validators,
                         decorators.computed_fields)))


def _validate_payload_model(spec: EventSpec, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        model: BaseModel = spec.payload.model_validate(payload)
    except ValidationError as exc:
        raise EventError(f'bad payload for "{spec.name}": {_validation_message(exc)}') from exc
    try:
        return bounded_value(model.model_dump(mode="python"), "payload")
    except OrderError as exc:
        raise EventError(f'bad payload for "{spec.name}": {exc}') from None


def _order_id(order: dict[str, Any]) -> str | None:
    value = order.get("id")
    return None if value is None else str(value)


def default_events() -> Catalogue[EventSpec]:
    """A copy of the built-in event catalogue (core and integrations)."""
    from ruledesk.actions import builtin_events

    return builtin_events()


def default_actions(config: Any = None) -> Catalogue[ActionSpec]:
    """A copy of the built-in action catalogue; register your own actions on it.  With ``config``
    (a ``Config``), its actions check against it (Send Email: its templates folder)."""
    from ruledesk.actions import builtin_actions

    return builtin_actions(config)


__all__ = ["Engine", "Decision", "ActionRecord", "EventError", "Result", "default_events", "default_actions"]
