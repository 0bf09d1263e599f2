"""Replay: the stored inbox events re-run in a dry run on other rules, compared with what was decided.

Each event runs on the order as it stood when the event was processed: the order its stored
decisions started from (the order of the last stored decision on it before the event; an
"Order is Imported" event carries its order).  Events are replayed one by one against the stored
history, not against each other: what a changed rule would have done to an order is not carried
over to the order's next event.  Nothing is written to the store.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ruledesk.engine.daemon.worker import IMPORTED, run_stored
from ruledesk.engine.lang.ruleset import Ruleset
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.engine.model.order import dump_value, load_json, parse_order
from ruledesk.engine.model.settings import StoreSettings
from ruledesk.engine.run.decision import Result
from ruledesk.engine.run.engine import Engine, EventError
from ruledesk.engine.run.explain import OFF
from ruledesk.engine.store import migrations, open_store
from ruledesk.engine.store.base import StoredEvent, StoreError
from ruledesk.engine.store.sql import SqlStore

# External actions are "scheduled" when the daemon runs them and "dry-run" in a replay: the same outcome.
_SAME_STATUS = {"dry-run": "scheduled"}
_HISTORIES_KEPT = 256  # orders whose decision history is kept while replaying


class ReplayError(ValueError):
    """The store cannot be replayed: not a ruledesk database, or one of another schema version."""


def open_history(url: str) -> SqlStore:
    """The store at ``url`` for reading its history: never created, never migrated (ReplayError otherwise)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path == ":memory:":
            raise ReplayError("an in-memory database has no history to replay")
        if not path.startswith("file:") and not Path(path).expanduser().is_file():
            raise ReplayError(f"{url}: no such database file")
    try:
        store = open_store(url, migrate=False)
    except (StoreError, ValueError) as exc:
        raise ReplayError(str(exc)) from None
    try:
        version = store.schema_version()
    except StoreError as exc:
        store.close()
        raise ReplayError(f"{store.url_for_display} is not a ruledesk store: {exc}") from None
    if version != migrations.VERSION:
        store.close()
        fix = "let the daemon migrate it first" if version < migrations.VERSION else "upgrade ruledesk"
        raise ReplayError(f"{store.url_for_display} has schema version {version}, this ruledesk reads "
                          f"{migrations.VERSION}: {fix}")
    return store


@dataclass(frozen=True)
class Action:
    """An action record as replay compares it: ``params`` as canonical JSON text (keys sorted),
    ``shown`` as the action was written (not compared)."""

    rule: str
    action: str
    status: str
    params: str
    shown: dict[str, Any] = field(compare=False, hash=False)

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Action":
        params = dump_value(record.get("params") or {})
        return cls(record["rule"], record["action"], _SAME_STATUS.get(record["status"], record["status"]),
                   json.dumps(params, sort_keys=True, ensure_ascii=False, default=str), params)

    def describe(self) -> str:
        params = ", ".join(f"{key}: {json.dumps(value, ensure_ascii=False, default=str)}"
                           for key, value in self.shown.items())
        return f"{self.rule}: {self.action}({params}) [{self.status}]"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "action": self.action, "status": self.status, "params": self.shown}


@dataclass(frozen=True)
class Outcome:
    """What one inbox event's decisions (its own and its cascade's) amount to: the rules fired, the
    actions run, and the folder its order ended in."""

    fired: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    folder: str | None = None

    @classmethod
    def of(cls, decisions: Iterable[dict[str, Any]], event: StoredEvent) -> "Outcome":
        """The outcome of section 8 decisions (JSON data) of the inbox event ``event``."""
        fired: list[str] = []
        actions: list[Action] = []
        folder = None
        for decision in decisions:
            fired.extend(decision.get("fired") or ())
            actions.extend(Action.of(record) for record in decision.get("actions") or ())
            if _on(decision, event):
                order = decision.get("order") or {}
                folder = order.get("folder") if isinstance(order.get("folder"), str) else None
        return cls(tuple(fired), tuple(actions), folder)


@dataclass
class Replayed:
    """One inbox event: what was decided (``before``) and what the new rules decide (``after``; None
    with ``error`` when the event cannot run on them, e.g. its button is gone)."""

    event: StoredEvent
    before: Outcome
    after: Outcome | None
    error: str | None = None

    @property
    def fired_changed(self) -> bool:
        return self.after is not None and self.before.fired != self.after.fired

    @property
    def removed(self) -> list[Action]:
        """The actions decided before that the new rules do not decide (as many times as missing)."""
        return _missing(self.before.actions, self.after.actions if self.after else ())

    @property
    def added(self) -> list[Action]:
        return _missing(self.after.actions, self.before.actions) if self.after else []

    @property
    def actions_changed(self) -> bool:
        return self.after is not None and bool(self.removed or self.added)

    @property
    def folder_changed(self) -> bool:
        return self.after is not None and self.before.folder != self.after.folder

    @property
    def changed(self) -> bool:
        return self.error is not None or self.fired_changed or self.actions_changed or self.folder_changed

    def to_json(self) -> dict[str, Any]:
        event = self.event
        data: dict[str, Any] = {"event_id": event.id, "store": event.store, "order_id": event.order_id,
                                "event": event.name}
        if self.error is not None:
            data["error"] = self.error
            return data
        assert self.after is not None
        if self.fired_changed:
            data["fired"] = {"before": list(self.before.fired), "after": list(self.after.fired)}
        if self.actions_changed:
            data["actions"] = {"removed": [a.to_json() for a in self.removed],
                               "added": [a.to_json() for a in self.added]}
        if self.folder_changed:
            data["folder"] = {"before": self.before.folder, "after": self.after.folder}
        return data


@dataclass
class Summary:
    """Counts over the replayed events (an event counts once in each way it changes)."""

    replayed: int = 0
    changed: int = 0
    fired: int = 0
    actions: int = 0
    folder: int = 0
    failed: int = 0  # events that cannot run on the new rules

    def add(self, replayed: Replayed) -> None:
        self.replayed += 1
        self.changed += replayed.changed
        self.fired += replayed.fired_changed
        self.actions += replayed.actions_changed
        self.folder += replayed.folder_changed
        self.failed += replayed.error is not None

    def to_json(self) -> dict[str, int]:
        return {"replayed": self.replayed, "changed": self.changed, "fired": self.fired, "actions": self.actions,
                "folder": self.folder, "failed": self.failed}


class Replay:
    """Replays the done events of ``store`` on ``ruleset`` in a dry run.  The clock the rules read
    (``now()``) is the time each event was processed, so time-dependent conditions decide as then."""

    def __init__(self, store: SqlStore, ruleset: Ruleset, *, events: Catalogue[EventSpec] | None = None,
                 actions: Catalogue[ActionSpec] | None = None, stores: Iterable[StoreSettings] | None = None,
                 max_depth: int = 10, max_firings: int = 100) -> None:
        self.store = store
        self.engine = Engine(ruleset, events=events, actions=actions, stores=stores, dry_run=True,
                             clock=lambda: self._at, max_depth=max_depth, max_firings=max_firings, explain=OFF)
        self._at = _dt.datetime.now(_dt.timezone.utc)
        # orders' stored decisions (JSON text, oldest first) and where each one is in the list
        self._histories: OrderedDict[tuple[str, str], tuple[list[str], dict[tuple, int]]] = OrderedDict()

    def run(self, *, since: float | None = None, order_id: str | None = None,
            store: str | None = None) -> Iterator[Replayed]:
        """Each done inbox event (received at or after ``since``, of the order and store given) in
        inbox order, replayed.  An exception other than EventError is the engine's: it propagates."""
        for event in self.store.iter_events(status="done", since=since, order_id=order_id, store=store):
            yield self.one(event)

    def one(self, event: StoredEvent) -> Replayed:
        """The stored event's stored outcome and its outcome on the rules (or why it cannot run on them)."""
        stored = [load_json(text) for text in self.store.decisions_of(event.id)]
        before = Outcome.of(stored, event)
        self._at = _dt.datetime.fromtimestamp(event.processed_at or event.received_at, _dt.timezone.utc)
        try:
            result = self._run(event, self._order_before(event, stored))
        except EventError as exc:
            return Replayed(event, before, None, str(exc))
        after = Outcome.of((load_json(d.to_json_text()) for d in result.decisions), event)
        return Replayed(event, before, after)

    def _order_before(self, event: StoredEvent, stored: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The order (JSON-able) of the last stored decision on the event's order before the event's
        own decisions; None when there is none (the event's own order is used)."""
        first = next((d for d in stored if _on(d, event)), None)
        if first is None or event.name == IMPORTED:
            return None
        texts, index = self._history(event.store, event.order_id)
        position = index.get(_key(first))
        if not position:
            return None
        previous = load_json(texts[position - 1]).get("order")
        return previous if isinstance(previous, dict) else None

    def _history(self, store: str, order_id: str) -> tuple[list[str], dict[tuple, int]]:
        """An order's stored decisions (JSON text, oldest first) and where each one is in the list."""
        ref = (store, order_id)
        found = self._histories.get(ref)
        if found is None:
            texts = self.store.decisions(store, order_id)
            found = texts, {_key(load_json(text)): i for i, text in enumerate(texts)}
            self._histories[ref] = found
            if len(self._histories) > _HISTORIES_KEPT:
                self._histories.popitem(last=False)
        else:
            self._histories.move_to_end(ref)
        return found

    def _run(self, event: StoredEvent, order: dict[str, Any] | None) -> Result:
        """What the worker does with the event (``worker.run_stored``), in a dry run."""
        try:
            current = parse_order(order) if order is not None else None
        except ValueError as exc:
            raise EventError(f"the stored order cannot be read: {exc}") from exc
        return run_stored(self.engine, event, current, dry_run=True)


def _on(decision: dict[str, Any], event: StoredEvent) -> bool:
    """Whether a decision of ``event``'s cascade is on the event's own order."""
    return (str(decision.get("order_id")) == event.order_id
            and (decision.get("store") or event.store) == event.store)


def _key(decision: dict[str, Any]) -> tuple[Any, ...]:
    """What tells one stored decision of an order from the others: its event id and event (an
    emitted event's id extends its cause's)."""
    return decision.get("event_id"), decision.get("event"), decision.get("depth")


def _missing(these: Iterable[Action], others: Iterable[Action]) -> list[Action]:
    """The actions of ``these`` that ``others`` lacks, in order (counted: twice here, once there: once)."""
    left = Counter(others)
    missing = []
    for action in these:
        if left[action]:
            left[action] -= 1
        else:
            missing.append(action)
    return missing
