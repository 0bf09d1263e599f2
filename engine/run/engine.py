"""The Engine: runs a compiled Ruleset against events, cascades emitted events, returns decisions."""

from __future__ import annotations

import datetime as _dt
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ruledesk.grammar import ast
from ruledesk.engine.model.catalogue import ACTIONS, EVENTS, ActionSpec, Catalogue, EventSpec
from ruledesk.grammar.diagnostics import closest
from ruledesk.engine.lang.compiler import CompiledRule, button_key, schedule_key
from ruledesk.engine.run.explain import DECIDING, FULL, LEVELS, OFF, Recorder, RuleOutcome, explain_lines
from ruledesk.engine.model.order import OrderError, dump_order, dump_value, parse_order, parse_store
from ruledesk.engine.lang.ruleset import Ruleset, build_ruleset, load_ruleset
from ruledesk.engine.model.context import ActionContext, ActionError, Emitted, Event, utcnow
from ruledesk.engine.lang.templates import UserTemplate


class EventError(ValueError):
    """An incoming event cannot be processed (unknown event, malformed order or payload)."""


@dataclass
class ActionRecord:
    rule: str
    action: str
    params: dict[str, Any]
    status: str  # "done" | "dry-run" | "failed" | "scheduled"
    error: str | None = None
    detail: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"rule": self.rule, "action": self.action, "params": dump_value(self.params),
                "status": self.status, "error": self.error}
        if self.detail:
            data["detail"] = dump_value(self.detail)
        return data


@dataclass
class Decision:
    """What happened for one processed event (LANGUAGE.md section 8)."""

    event: str
    order_id: str | None
    ruleset: str
    fired: list[str] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    order: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    event_id: str | None = None
    cause: str | None = None  # the rule whose action emitted this event
    stopped: dict[str, Any] | None = None
    dry_run: bool = False
    sources: dict[str, str] = field(default_factory=dict, repr=False)
    # What the engine saw, recorded as cheaply as it can be (tuples, ranges of the shared match
    # result); ``outcomes`` turns it into RuleOutcome objects when someone asks.
    _log: list[tuple] = field(default_factory=list, repr=False)
    _outcomes: list[RuleOutcome] | None = field(default=None, repr=False)

    @property
    def outcomes(self) -> list[RuleOutcome]:
        """Every rule of the event in evaluation order, fired or not and why (see engine/explain.py)."""
        if self._outcomes is None:
            self._outcomes = [outcome for entry in self._log for outcome in _outcomes_of(entry)]
        return self._outcomes

    def explain(self, full: bool = False) -> list[str]:
        """Readable lines: every rule of the event, fired or the clause that decided it did not."""
        return explain_lines(self.outcomes, self.sources, full)

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event": self.event, "order_id": self.order_id, "ruleset": self.ruleset, "fired": list(self.fired),
            "actions": [a.to_json() for a in self.actions], "emitted": list(self.emitted), "order": self.order,
            "depth": self.depth,
        }
        if self.event_id is not None:
            data["event_id"] = self.event_id
        if self.cause is not None:
            data["cause"] = self.cause
        if self.stopped is not None:
            data["stopped"] = self.stopped
        if self.dry_run:
            data["dry_run"] = True
        if explain:
            data["explain"] = [outcome.to_json(self.sources) for outcome in self.outcomes]
        return data


@dataclass
class _Pending:
    name: str
    payload: dict[str, Any]
    order: dict[str, Any]
    depth: int
    chain: tuple[str, ...]
    cause: str | None = None
    event_id: str | None = None
    plan_key: str | None = None  # a button's or a schedule's rules instead of the event's


class _Runner:
    """Runs the actions of one fired rule: the object generated ``act`` functions call."""

    __slots__ = ("engine", "rule", "order", "event", "store", "records", "emitted", "stopped", "changed",
                 "dry_run", "event_ns", "now", "touched")

    def __init__(self, engine: "Engine", rule: CompiledRule, order, event: Event, event_ns, store, dry_run, now):
        self.engine = engine
        self.rule = rule
        self.order = order
        self.event = event
        self.event_ns = event_ns
        self.store = store
        self.dry_run = dry_run
        self.now = now
        self.records: list[ActionRecord] = []
        self.emitted: list[Emitted] = []
        self.stopped = False
        self.changed = False
        self.touched: set[str] | None = set()  # top-level order fields changed; None: can't tell

    def call(self, slot: int, params: dict[str, Any], item: dict[str, Any] | None,
             binders: dict[str, Any] | None = None) -> None:
        """Run one action: render its templates (with ``order``, ``item``, ``event``, ``store`` and the
        enclosing ``for`` binders by name), validate its parameters, perform it or record it."""
        spec: ActionSpec = self.rule.slots[slot].spec
        record = ActionRecord(self.rule.name, spec.name, params, "done")
        self.records.append(record)
        for key, value in params.items():
            if isinstance(value, UserTemplate):
                context = {"order": self.order, "item": item, "event": self.event_ns, "store": self.store}
                if binders:
                    context.update(binders)
                try:
                    params[key] = value.render(context)
                except Exception as exc:  # a template that fails at run time fails its action, never the engine
                    record.status, record.error = "failed", f"template {key!r}: {exc}"
                    record.params = {k: v.source if isinstance(v, UserTemplate) else v for k, v in params.items()}
                    return
        try:
            model = spec.params.model_validate(params)
        except ValidationError as exc:
            record.status, record.error = "failed", _validation_message(exc)
            return
        if spec.external and self.dry_run:
            record.status = "dry-run"
            return
        if spec.run is None:
            record.status, record.error = "failed", f'action "{spec.name}" has no implementation'
            return
        ctx = ActionContext(self.order, self.event, self.store, item=item, dry_run=self.dry_run,
                            clock=self.engine.clock if self.now is None else (lambda: self.now))
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
        if ctx.changed or spec.mutates_order:
            self.changed = True
            if spec.touches is None:
                self.touched = None
            elif self.touched is not None:
                self.touched.update(spec.touches)
        self.emitted.extend(ctx.emitted)
        if ctx.stopped:
            self.stopped = True  # the rule's other actions still run; the next rules do not
        if detail and detail.get("status"):
            record.status = detail["status"]


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)


class Engine:
    """Runs rules.  ``Engine.from_paths("rules.d").process(event)`` returns every decision of the cascade.

    Thread-safe: the ruleset is immutable and each ``process`` call keeps its state on its own
    stack; concurrent calls on different orders need no lock.  ``reload`` swaps the ruleset
    atomically; an event in flight finishes on the ruleset it started with.
    """

    def __init__(self, ruleset: Ruleset, *, events: Catalogue[EventSpec] | None = None,
                 actions: Catalogue[ActionSpec] | None = None, dry_run: bool = False,
                 clock: Callable[[], _dt.datetime] | None = None, max_depth: int = 10, max_firings: int = 100,
                 explain: str = DECIDING) -> None:
        self.ruleset = ruleset
        self.explain = explain
        self.events = events if events is not None else default_events()
        self.actions = actions if actions is not None else default_actions()
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
        """Validate an incoming event: known name, a valid order, a payload of the event's model."""
        try:
            event = data if isinstance(data, Event) else Event.from_dict(data)
        except ValueError as exc:
            raise EventError(str(exc)) from exc
        spec = self.events.get(event.name)
        if spec is None:
            suggestions = self.events.suggest(event.name)
            hint = f" (did you mean {suggestions[0]!r}?)" if suggestions else ""
            raise EventError(f"unknown event {event.name!r}{hint}")
        try:
            order = parse_order(event.order)
            store = parse_store(event.store)
        except OrderError as exc:
            raise EventError(str(exc)) from exc
        payload = _validate_payload(spec, event.payload)
        return Event(spec.name, order, payload, store, event.id)

    # ---- matching and processing ----------------------------------------------------------
    def match(self, data: Event | dict[str, Any], *, validated: bool = False) -> list[str]:
        """Names of the rules whose conditions hold for this event and order, without running anything."""
        event = data if validated and isinstance(data, Event) else self.event(data)
        plan = self.ruleset.plans.get(event.name)
        if plan is None:
            return []
        names = plan.names
        hits = plan.match(event.order, event.namespace, event.store, self.clock() if plan.uses_now else None)
        return [names[i] for i in hits]

    def process(self, data: Event | dict[str, Any], *, dry_run: bool | None = None,
                explain: str | None = None) -> list[Decision]:
        """Process one incoming event and every event it emits; one decision per processed event.

        ``explain`` ("off", "deciding", "full"; default: the engine's) says how much of the why
        each decision records: "deciding" (the default) keeps, for every rule that did not fire,
        the clause that decided it and the values it compared; "full" keeps every value every
        condition computed (the ruleset must be built with ``trace=True``)."""
        return self._cascade(self.event(data), None, dry_run, explain)

    def press(self, label: str, data: dict[str, Any], *, store: dict[str, Any] | str | None = None,
              dry_run: bool | None = None, explain: str | None = None) -> list[Decision]:
        """Run the rules of ``when button "label"`` on one order (Order Desk's Custom Button)."""
        plan = self.ruleset.plan(button_key(label))
        if plan is None:
            labels = sorted({r.trigger.label for r in self.ruleset.rules if isinstance(r.trigger, ast.ButtonTrigger)})
            near = closest(label, labels)
            raise EventError(f"no enabled rule has button {label!r}"
                             + (f" (did you mean {near[0]!r}?)" if near else ""))
        name = f'Button "{plan.rules[0].trigger.label}"'
        return self._cascade(self._trigger_event(name, data, store), plan, dry_run, explain)

    def run_schedule(self, rule: str, data: dict[str, Any], *, store: dict[str, Any] | str | None = None,
                     dry_run: bool | None = None, explain: str | None = None) -> list[Decision]:
        """Run the scheduled rule ``rule`` (``when every D in folder "F"``) on one order; the caller
        (the scheduler) picks the orders of the folder."""
        plan = self.ruleset.plan(schedule_key(rule))
        if plan is None:
            raise EventError(f"no enabled scheduled rule is named {rule!r}")
        trigger = plan.rules[0].trigger
        name = f'Every {trigger.every.raw} in folder "{trigger.folder}"'
        return self._cascade(self._trigger_event(name, data, store), plan, dry_run, explain)

    def _trigger_event(self, name: str, order: dict[str, Any], store: dict[str, Any] | str | None) -> Event:
        try:
            return Event(name, parse_order(order), {}, parse_store({"name": store} if isinstance(store, str)
                                                                   else store or {}))
        except OrderError as exc:
            raise EventError(str(exc)) from exc

    def _cascade(self, event: Event, plan, dry_run: bool | None, explain: str | None) -> list[Decision]:
        ruleset = self.ruleset
        dry = self.dry_run if dry_run is None else dry_run
        explain = self.explain if explain is None else explain
        if explain not in LEVELS:
            raise ValueError(f"explain must be one of {', '.join(LEVELS)}")
        if explain == FULL and not ruleset.traced:
            raise ValueError("a full explanation needs a ruleset built with trace=True "
                             "(Engine.from_paths(..., explain='full'))")
        first_key = next((key for key, p in ruleset.plans.items() if p is plan), None)
        queue: deque[_Pending] = deque([_Pending(event.name, event.payload, event.order, 0, (event.name,),
                                                 None, event.id, first_key)])
        decisions: list[Decision] = []
        budget = [self.max_firings]
        while queue:
            pending = queue.popleft()
            decision, emitted = self._run_event(ruleset, pending, event.store, dry, budget, explain)
            decisions.append(decision)
            if decision.stopped is not None and decision.stopped.get("reason", "").startswith("firing limit"):
                queue.clear()
                break
            for rule_name, item in emitted:
                spec = self.events.get(item.name)
                name = spec.name if spec is not None else item.name
                chain = pending.chain + (rule_name, name)
                if pending.depth + 1 > self.max_depth:
                    decision.stopped = {"reason": f"depth limit {self.max_depth} reached; {name!r} was not processed",
                                        "chain": list(chain)}
                    continue
                payload = _validate_payload(spec, item.payload) if spec is not None else dict(item.payload)
                queue.append(_Pending(name, payload, item.order if item.order is not None else pending.order,
                                      pending.depth + 1, chain, rule_name))
        return decisions

    def _run_event(self, ruleset: Ruleset, pending: _Pending, store: dict[str, Any], dry: bool,
                   budget: list[int], explain: str) -> tuple[Decision, list[tuple[str, Emitted]]]:
        order = pending.order
        decision = Decision(pending.name, _order_id(order), ruleset.version, depth=pending.depth,
                            event_id=pending.event_id, cause=pending.cause, dry_run=dry, sources=ruleset.sources)
        emitted: list[tuple[str, Emitted]] = []
        plan = ruleset.plan(pending.plan_key or pending.name)
        if plan is not None:
            self._evaluate(plan, pending, order, store, dry, budget, explain, decision, emitted)
        decision.order = dump_order(order)
        return decision, emitted

    def _evaluate(self, plan, pending: _Pending, order, store, dry: bool, budget: list[int], explain: str,
                  decision: Decision, emitted: list[tuple[str, Emitted]]) -> None:
        """Run the event's rules in order; each condition sees the order as the earlier rules left it.

        While no action has changed the order, the shared ``match`` result stays valid; after a
        change the remaining rules are evaluated one by one.  With explanations on, every rule
        that does not fire gets its deciding clause, computed against the very state it saw."""
        now = self.clock() if plan.uses_now else None
        event_ns = {"name": pending.name, **pending.payload}
        event = Event(pending.name, order, pending.payload, store, pending.event_id)
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
            else:
                rule = rules[index]
                if explain == FULL:
                    recorder = Recorder()
                    holds = bool(rule.trace(order, event_ns, store, now, recorder.value, recorder.element))
                    if not holds:
                        why = rule.why(order, event_ns, store, now)
                        log.append((_ONE, rule, False, why, recorder.entries))
                        index += 1
                        continue
                    trace = recorder.entries
                elif explain == DECIDING:
                    why = rule.why(order, event_ns, store, now)
                    if why is not None:
                        log.append((_ONE, rule, False, why, None))
                        index += 1
                        continue
                elif rule.why(order, event_ns, store, now) is not None:
                    index += 1
                    continue
            rule = rules[index]
            if budget[0] <= 0:
                decision.stopped = {"reason": f"firing limit {self.max_firings} reached; rule {rule.name!r} "
                                              "and everything after it did not run",
                                    "chain": list(pending.chain) + [rule.name]}
                if explain != OFF:
                    log.append((_SKIPPED, rules, index, "not run: firing limit"))
                return
            budget[0] -= 1
            runner = _Runner(self, rule, order, event, event_ns, store, dry, now)
            rule.act(runner, order, event_ns, store, now)
            decision.fired.append(rule.name)
            decision.actions.extend(runner.records)
            if explain != OFF:
                log.append((_ONE, rule, True, None, trace if explain == FULL else None))
            for item in runner.emitted:
                emitted.append((rule.name, item))
                decision.emitted.append(self._canonical_event(item.name))
            index += 1
            if runner.stopped:
                if explain != OFF:
                    log.append((_SKIPPED, rules, index, f"not evaluated: {rule.name!r} stopped processing"))
                return
            if runner.changed and (runner.touched is None or plan.reads is None or runner.touched & plan.reads):
                batch = False  # later conditions must see the order as this rule left it

    def _canonical_event(self, name: str) -> str:
        spec = self.events.get(name)
        return spec.name if spec is not None else name


_MISSED, _ONE, _SKIPPED = range(3)  # kinds of Decision._log entries


def _outcomes_of(entry: tuple) -> list[RuleOutcome]:
    kind = entry[0]
    if kind == _MISSED:
        _, plan, low, high, missed, snapshot, order, event_ns, store = entry
        return [RuleOutcome(plan.rules[i], False, missed[i], plan.values(i, missed[i], snapshot, order, event_ns, store))
                for i in range(low, high)]
    if kind == _ONE:
        _, rule, fired, why, trace = entry
        return [RuleOutcome(rule, fired, why[0] if why else None, why[1:] if why else (), trace)]
    _, rules, start, note = entry
    return [RuleOutcome(rule, False, note=note) for rule in rules[start:]]


def _validate_payload(spec: EventSpec, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        model: BaseModel = spec.payload.model_validate(payload)
    except ValidationError as exc:
        raise EventError(f'bad payload for "{spec.name}": {_validation_message(exc)}') from exc
    return model.model_dump(mode="python")


def _order_id(order: dict[str, Any]) -> str | None:
    value = order.get("id")
    return None if value is None else str(value)


def default_events() -> Catalogue[EventSpec]:
    """A copy of the built-in event catalogue (core and integrations)."""
    _register_builtins()
    return EVENTS.copy()


def default_actions() -> Catalogue[ActionSpec]:
    """A copy of the built-in action catalogue; register your own actions on it."""
    _register_builtins()
    return ACTIONS.copy()


def _register_builtins() -> None:
    from ruledesk.engine.model import events  # noqa: F401 - registers the core events
    import ruledesk.actions  # noqa: F401 - registers actions and integration events


__all__ = ["Engine", "Decision", "ActionRecord", "EventError", "default_events", "default_actions"]
