"""What an action works with: the incoming event, the action context, and the errors an action raises."""

from __future__ import annotations

import copy
import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UTC = _dt.timezone.utc


@dataclass
class Event:
    """One thing that happened to one order: the input of ``Engine.process``."""

    name: str
    order: dict[str, Any]
    payload: dict[str, Any] = field(default_factory=dict)
    store: Any = field(default_factory=dict)  # a store's name or settings; validated: StoreSettings
    id: str | None = None
    # Set by ``Engine.event`` on the events it validated (it owns their payload and store): what
    # rules see as ``event`` and ``store``, built once instead of at every ``Engine.match``.
    _namespace: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _store_view: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def namespace(self) -> dict[str, Any]:
        """What rules see as ``event``: the payload's fields and ``name``."""
        return {"name": self.name, **self.payload}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Event":
        """An event from section 8's input shape; a bare order is "Order is Imported"."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if "event" not in data:
            return cls("Order is Imported", data)
        order = data.get("order")
        if not isinstance(order, dict):
            raise ValueError('an event needs an "order" object')
        name = data["event"]
        if not isinstance(name, str):
            raise ValueError('"event" must be a string')
        payload = data.get("payload") or {}
        if not isinstance(payload, dict):
            raise ValueError('"payload" must be an object')
        store = data.get("store") or {}
        if not isinstance(store, (str, dict)):
            raise ValueError('"store" must be a name or an object')
        event_id = data.get("id")
        return cls(name, order, payload, store, str(event_id) if event_id is not None else None)


@dataclass
class Emitted:
    """An event an action asked for; processed after the current event's rules."""

    name: str
    payload: dict[str, Any]
    order: dict[str, Any] | None = None  # another order (split, copy); None means the same order
    store: str | None = None  # the store of that other order; None means the emitting order's store
    # A job to record once this event's rules have run (a job handler's continuation, e.g. podOS's
    # send after "Before Order Submitted to podOS"): it commits with the event's decisions, so it
    # sees the order as those rules left it.  Honoured only for events a job emitted.
    then: Any = None


class ActionContext:
    """What an action implementation may touch."""

    __slots__ = ("order", "item", "event", "emitted", "stopped", "changed", "left", "_clock", "_store", "_store_copy")

    def __init__(
        self,
        order: dict[str, Any],
        event: Event,
        store: dict[str, Any],
        *,
        item: dict[str, Any] | None = None,
        clock: Callable[[], _dt.datetime] | None = None,
    ) -> None:
        self.order = order
        self.item = item
        self.event = event
        self._store = store
        self._store_copy: dict[str, Any] | None = None
        self.emitted: list[Emitted] = []
        self.stopped = False
        self.changed = False
        self.left: str | None = None  # the store the order moved to (Move Order to Store)
        self._clock = clock or utcnow

    def emit(self, name: str, payload: dict[str, Any] | None = None, order: dict[str, Any] | None = None,
             store: str | None = None) -> None:
        """Ask for an event: for this order, or for ``order`` (a split or copied one) in ``store``
        (None: the store of the order that emitted it).  The engine checks it against the action's
        declared ``emits`` and the event's payload model."""
        self.emitted.append(Emitted(name, payload or {}, order, store))

    @property
    def store(self) -> dict[str, Any]:
        """The store's settings as rules see them (no secrets); the action's own copy, made when it
        first looks (the engine shares one view between every event of the store)."""
        if self._store_copy is None:
            self._store_copy = copy.deepcopy(self._store)
        return self._store_copy

    def stop(self) -> None:
        self.stopped = True

    def leave(self, store: str) -> None:
        """The order leaves its store for ``store`` (Move Order to Store): it is removed from its
        store when the result commits, and no further rule runs on it there."""
        self.left = store
        self.stopped = True

    def now(self) -> _dt.datetime:
        return self._clock()


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(UTC).replace(microsecond=0)


class ActionError(Exception):
    """An action could not be carried out; the message goes into the decision."""
