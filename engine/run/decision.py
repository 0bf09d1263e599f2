"""Decisions: what happened for one processed event (LANGUAGE.md section 8), and the result of one incoming event."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from ruledesk.engine.model.jobs import Job
from ruledesk.engine.model.order import dump_order, dump_value, format_datetime, parse_datetime, to_json, to_json_text
from ruledesk.engine.run.explain import Rendered, RuleOutcome, explain_lines, render_value


@dataclass
class ActionRecord:
    rule: str
    action: str
    params: dict[str, Any]
    status: str  # "done" | "dry-run" | "failed" | "scheduled"
    error: str | None = None
    detail: dict[str, Any] | None = None
    job: Job | None = None  # the job an external action recorded ("scheduled", or "dry-run": what would be done)

    def to_json(self, dumped: bool = True) -> dict[str, Any]:
        """The record as JSON-able data; ``dumped=False`` leaves runtime values (Decimals, datetimes)
        as they are, for ``to_json_text`` to write."""
        dump = dump_value if dumped else _same
        data = {"rule": self.rule, "action": self.action, "params": dump(self.params),
                "status": self.status, "error": self.error}
        if self.detail:
            data["detail"] = dump(self.detail)
        if self.job is not None:
            data["job"] = dump(self.job.to_json())
        return data


def _same(value: Any) -> Any:
    return value


@dataclass
class Decision:
    """What happened for one processed event (LANGUAGE.md section 8)."""

    event: str
    order_id: str | None
    ruleset: str
    fired: list[str] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    # The JSON-able order as this event's rules left it: a property (below).  The engine does not
    # copy it: a decision shares the live order of its result until a later event of the cascade is
    # about to change that order, and only then keeps a snapshot (``_share``, ``_freeze``).
    order: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    event_id: str | None = None
    cause: str | None = None  # the rule whose action emitted this event
    stopped: dict[str, Any] | None = None
    # Jobs the engine recorded after the rules, for the event itself (a copied order's new shipment
    # passed back to its original): not any rule's action, so not in ``actions``.
    followups: list[ActionRecord] = field(default_factory=list)
    dry_run: bool = False
    store: str | None = None  # the name of the order's store
    sources: dict[str, str] = field(default_factory=dict, repr=False)
    # What the engine saw, recorded as cheaply as it can be (tuples, ranges of the shared match
    # result); ``outcomes`` turns it into RuleOutcome objects when someone asks.
    _log: list[tuple] = field(default_factory=list, repr=False)
    _outcomes: list[RuleOutcome] | None = field(default=None, repr=False)

    @property
    def outcomes(self) -> list[RuleOutcome]:
        """Every rule of the event in evaluation order, fired or not and why (see engine/run/explain.py)."""
        if self._outcomes is None:
            self._outcomes = [outcome for entry in self._log for outcome in _outcomes_of(entry)]
        return self._outcomes

    def why(self) -> list[list]:
        """The explanation in the compact form a store keeps: one entry per rule of the event, in
        evaluation order: ``[name, 1]`` fired; ``[name, 0, clause, [values]]`` did not fire,
        ``clause`` being the index of the deciding clause among the rule's top-level clauses and
        the values the ones it compared; ``[name, 0, null, note]`` not evaluated.  Cheaper than
        ``to_json(explain=True)`` (no clause text, no rendering): ``stored_explanation`` turns it
        into that form again with the ruleset it names."""
        out: list[list] = []
        for entry in self._log:
            kind = entry[0]
            if kind == _MISSED:
                _, plan, low, high, missed, snapshot, order, event_ns, store = entry
                rules = plan.rules
                for i in range(low, high):
                    clause = plan.deciding(i, missed)
                    values = plan.values(i, clause, snapshot, order, event_ns, store)
                    out.append([rules[i].name, 0, clause, [v if v.__class__ in _PLAIN else _plain(v)
                                                           for v in values]])
            elif kind == _ONE:
                _, rule, fired, why, _trace = entry
                if fired:
                    out.append([rule.name, 1])
                else:
                    out.append([rule.name, 0, why[0] if why else None,
                                [v if v.__class__ in _PLAIN else _plain(v) for v in (why[1:] if why else ())]])
            else:
                _, rules, start, note = entry
                out.extend([rule.name, 0, None, note] for rule in rules[start:])
        return out

    def explain(self, full: bool = False) -> list[str]:
        """Readable lines: every rule of the event, fired or the clause that decided it did not."""
        return explain_lines(self.outcomes, self.sources, full)

    def _share(self, order: dict[str, Any]) -> None:
        """Show the live runtime ``order`` (the engine's; it calls ``_freeze`` before changing it again)."""
        self._snapshot, self._live = None, order

    def _freeze(self) -> None:
        """Keep the order as it is now: the live one is about to change."""
        if self._live is not None:
            self._snapshot, self._live = dump_order(self._live), None

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        """The decision as JSON-able data (LANGUAGE.md section 8)."""
        return self._data(explain, True)

    def to_json_text(self, explain: bool = False) -> str:
        """The decision as one line of compact JSON: what ``json.dumps(to_json())`` gives (in meaning;
        a float may be spelled differently), written by orjson straight from the runtime values."""
        try:
            return to_json_text(self._data(explain, False))
        except (TypeError, ValueError):  # what orjson refuses (an int past 64 bits, a lone surrogate, ...)
            return to_json(self._data(explain, True), dumped=True)

    def stored_text(self) -> str:
        """The decision as a store keeps it: ``to_json_text()`` with the compact ``why`` (see ``why``)."""
        data = self._data(False, False)
        data["why"] = self.why()
        try:
            return to_json_text(data)
        except (TypeError, ValueError):  # what orjson refuses: json, with the numbers as numbers
            why = json.loads(orjson.dumps(data["why"], default=str), parse_float=Decimal)
            return to_json(self._data(False, True) | {"why": why}, dumped=False)

    def _data(self, explain: bool, dumped: bool) -> dict[str, Any]:
        if dumped or self._live is None:
            order = self.order
        else:
            order = self._live
        data: dict[str, Any] = {
            "event": self.event, "order_id": self.order_id, "ruleset": self.ruleset, "fired": list(self.fired),
            "actions": [a.to_json(dumped) for a in self.actions], "emitted": list(self.emitted), "order": order,
            "depth": self.depth,
        }
        if self.event_id is not None:
            data["event_id"] = self.event_id
        if self.store is not None:
            data["store"] = self.store
        if self.cause is not None:
            data["cause"] = self.cause
        if self.stopped is not None:
            data["stopped"] = self.stopped
        if self.followups:
            data["followups"] = [a.to_json(dumped) for a in self.followups]
        if self.dry_run:
            data["dry_run"] = True
        if explain:
            data["explain"] = [outcome.to_json(self.sources) for outcome in self.outcomes]
        return data


def _get_order(self: Decision) -> dict[str, Any]:
    live = self._live
    return self._snapshot if live is None else dump_order(live)


def _set_order(self: Decision, order: dict[str, Any]) -> None:
    self._snapshot, self._live = order, None  # given JSON-able, as the field always was


Decision.order = property(_get_order, _set_order, doc="The JSON-able order as this event's rules left it "
                                                         "(``dump_order``): the live order's, or the snapshot kept "
                                                         "before a later event changed it.")


def decision_line(decision: Decision, explain: bool = False) -> str:
    """One decision as a JSON line (no newline): ``Decision.to_json_text``."""
    return decision.to_json_text(explain)


class OrderRef(NamedTuple):
    """An order in a store: orders are identified by their store and their id."""

    store: str
    order_id: str | None


@dataclass(frozen=True)
class EmittedEvent:
    """An event an action or a job emitted: its deterministic id (derived from the id of the event
    that caused it), name, order and payload, and the rule that emitted it."""

    id: str
    name: str
    order: OrderRef
    payload: dict[str, Any]
    cause: str | None
    processed: bool = True  # False when the depth or firing limit kept it from running

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.name, "store": self.order.store, "order_id": self.order.order_id,
                "payload": dump_value(self.payload), "cause": self.cause, "processed": self.processed}


@dataclass(frozen=True)
class Handoff:
    """An event for another order, to run under that order's own lease: its id (derived from the
    emitting event's), name, store, the order it carries (runtime representation, for an order the
    store does not hold yet), payload, and how deep in the chain of events it is."""

    id: str
    name: str
    store: str
    order: dict[str, Any]
    payload: dict[str, Any]
    depth: int


@dataclass
class Result:
    """Everything one incoming event led to, for the caller to commit in one transaction: a decision
    per processed event (the incoming one first, then the emitted ones breadth-first), the final
    state of every order the cascade touched (runtime representation), the jobs external actions
    recorded, and the events the cascade emitted.  Processing the same event again gives the same
    event ids and job keys."""

    event_id: str
    decisions: list[Decision] = field(default_factory=list)
    orders: dict[OrderRef, dict[str, Any]] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    events: list[EmittedEvent] = field(default_factory=list)
    stores: dict[str, Any] = field(default_factory=dict, repr=False)  # StoreSettings by name, secrets included
    # Events for other orders (a split piece, a copy in another store) that an engine built with
    # ``handoff=True`` leaves to the caller: the daemon puts them in the inbox, where they run under
    # their own order's lease.  Without handoff they are processed in the cascade, like any other.
    handoffs: list["Handoff"] = field(default_factory=list)
    removed: list[OrderRef] = field(default_factory=list)  # orders that left their store (Move Order to Store)

    @property
    def order(self) -> dict[str, Any] | None:
        """The incoming event's order as the cascade left it."""
        return next(iter(self.orders.values()), None)


_MISSED, _ONE, _SKIPPED = range(3)  # kinds of Decision._log entries
_PLAIN = frozenset((str, int, bool, type(None)))


def _plain(value: Any) -> Any:
    """A compared value as JSON holds it and ``stored_explanation`` reads it back: a Decimal as the
    number it is (exponent kept: 50.00 stays 50.00), a datetime as {"$date": text}, lists and sets
    as lists, anything else as {"$text": how a rule would write it}."""
    if isinstance(value, Decimal):
        text = str(value)
        return orjson.Fragment(text) if value.is_finite() else text
    if isinstance(value, _dt.datetime):
        return {"$date": format_datetime(value)}
    if isinstance(value, (list, tuple)):
        return [v if v.__class__ in _PLAIN else _plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((v if v.__class__ in _PLAIN else _plain(v) for v in value), key=str)
    if isinstance(value, dict):
        return {str(k): v if v.__class__ in _PLAIN else _plain(v) for k, v in value.items()}
    return {"$text": render_value(value, limit=10_000)}


def _runtime(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "$date" in value:
            return parse_datetime(value["$date"]) or value["$date"]
        if "$text" in value:
            return Rendered(value["$text"])
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def stored_explanation(why: list[list], ruleset: Any) -> list[dict[str, Any]]:
    """The ``explain`` list of ``to_json(explain=True)`` from a stored decision's compact ``why``
    and the ruleset it was made with (by version: the store keeps every ruleset's sources)."""
    out = []
    for entry in why:
        rule = ruleset.rule(entry[0])
        if rule is None:  # cannot happen with the right ruleset; said rather than hidden
            out.append({"rule": entry[0], "fired": bool(entry[1]), "note": "not in the ruleset"})
            continue
        if entry[1]:
            outcome = RuleOutcome(rule, True)
        elif entry[2] is None and isinstance(entry[3], str):
            outcome = RuleOutcome(rule, False, note=entry[3])
        else:
            outcome = RuleOutcome(rule, False, entry[2], tuple(_runtime(v) for v in entry[3]))
        out.append(outcome.to_json(ruleset.sources))
    return out


def _outcomes_of(entry: tuple) -> list[RuleOutcome]:
    kind = entry[0]
    if kind == _MISSED:
        _, plan, low, high, missed, snapshot, order, event_ns, store = entry
        outcomes = []
        for i in range(low, high):
            clause = plan.deciding(i, missed)
            outcomes.append(RuleOutcome(plan.rules[i], False, clause,
                                        plan.values(i, clause, snapshot, order, event_ns, store)))
        return outcomes
    if kind == _ONE:
        _, rule, fired, why, trace = entry
        return [RuleOutcome(rule, fired, why[0] if why else None, why[1:] if why else (), trace)]
    _, rules, start, note = entry
    return [RuleOutcome(rule, False, note=note) for rule in rules[start:]]
