"""Intake: incoming events (HTTP bodies, followed JSONL lines) -> validated inbox entries.

Nothing is taken half: a body whose one event is refused is refused whole, with the reason and
the event's place in the body.  Events are validated by the engine (known event, valid order,
known store, a payload of the event's model) before they are stored, so the inbox holds only
events the worker can run; an event without an id gets the one derived from its content, so a
re-delivered copy is acknowledged and ignored.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from ruledesk.engine.model.order import to_json_text
from ruledesk.engine.run.engine import Engine, EventError
from ruledesk.engine.store.base import Inbound
from ruledesk.engine.store.sql import SqlStore


class IntakeError(ValueError):
    """A refused body: ``status`` (HTTP), the reason, and where in the body."""

    def __init__(self, status: int, message: str, where: str | None = None) -> None:
        self.status = status
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": self.message}
        if self.where is not None:
            data["at"] = self.where
        return data


_BYTE = re.compile(r"at byte (\d+)|char (\d+)")
_decode = msgspec.json.Decoder(float_hook=Decimal).decode  # load_json's fast path


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (send a number or null)")


def _load(body: bytes) -> Any:
    """``load_json(body)`` (the same value), except that NaN and Infinity, which JSON does not
    have (json.loads takes them), are refused."""
    try:
        return _decode(body)
    except Exception:  # invalid JSON, NaN/Infinity, lone surrogates, deep nesting: json decides
        return json.loads(body, parse_float=Decimal, parse_constant=_not_json)


def parse_body(body: bytes) -> Any:
    """The JSON of a body; IntakeError 400 with the line and column of a syntax error."""
    if not body.strip():
        raise IntakeError(400, "the body is empty: send a JSON object (one event) or an array of them")
    try:
        return _load(body)
    except RecursionError:
        raise IntakeError(400, "not valid JSON here: arrays and objects nest too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntakeError(400, f"not valid JSON: {_json_problem(exc)}", _json_where(body, exc)) from None


def _json_problem(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or str(exc).split(" - at ")[0]
    return _BYTE.sub("", text).rstrip(" :,(") or type(exc).__name__


def _json_where(body: bytes, exc: BaseException) -> str | None:
    position = getattr(exc, "pos", None)
    if position is None and isinstance(exc, UnicodeDecodeError):
        position = exc.start
    if position is None:
        found = _BYTE.search(str(exc))
        position = int(found.group(1) or found.group(2)) if found else None
    if position is None:
        return None
    before = body[:position]
    line = before.count(b"\n") + 1
    column = position - (before.rfind(b"\n") + 1) + 1
    return f"line {line}, column {column}"


@dataclass(frozen=True)
class Accepted:
    id: str
    new: bool


class Intake:
    """Validates events against the active engine and writes them to the inbox."""

    def __init__(self, store: SqlStore, engine: Callable[[], Engine], *, wall: Callable[[], float],
                 on_enqueued: Callable[[list[Inbound], list[bool]], None] | None = None) -> None:
        self.store = store
        self.engine = engine
        self.wall = wall
        self.on_enqueued = on_enqueued
        self._waiting: list[tuple[list[Inbound], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        # SQLite answers in microseconds: writing on the event loop's thread beats handing the GIL
        # back and forth with a writer thread; a network database is written from a thread.
        self.inline = store.backend == "sqlite"

    # ---- validation ------------------------------------------------------------------------------
    def prepare(self, data: Any, *, store: str | None = None, source: str = "api") -> list[Inbound]:
        """Inbox entries for one event object or an array of them; ``store``: the store the caller
        may write to (an event naming another is refused with 403; one naming none is for it)."""
        if isinstance(data, list):
            if not data:
                raise IntakeError(400, "the array is empty: send at least one event")
            return [self.one(item, store=store, source=source, where=f"[{i}]") for i, item in enumerate(data)]
        return [self.one(data, store=store, source=source)]

    def one(self, data: Any, *, store: str | None = None, source: str = "api", where: str | None = None
            ) -> Inbound:
        if not isinstance(data, dict):
            raise IntakeError(400, f"an event is a JSON object, not {_kind(data)}", where)
        engine = self.engine()
        given = data.get("store") if "event" in data else None
        if store is not None:
            if given is None and "event" in data:
                data = {**data, "store": store}
            elif given is None:  # a bare order: "Order is Imported" in the caller's store
                data = {"event": "Order is Imported", "order": data, "store": store}
            elif given != store:
                name = given if isinstance(given, str) else "settings given inline"
                raise IntakeError(403, f"this token is for store {store!r}, not {name!r}", where)
        if "event" in data and "id" in data and data["id"] is not None:
            _check_id(data["id"], where)
        try:
            event = engine.event(data)
        except EventError as exc:
            raise IntakeError(422, str(exc), where) from None
        order_id = event.order.get("id")
        if order_id is None or order_id == "":
            raise IntakeError(422, "the order has no id: ruledesk keeps orders by their id", where)
        raw_order = data["order"] if "event" in data else data
        body = {"event": event.name, "order": raw_order, "payload": data.get("payload") or {},
                "store": data.get("store") if "event" in data and data.get("store") is not None
                else event.store.name, "id": event.id}
        try:
            text = to_json_text(body)
        except TypeError as exc:  # what orjson refuses the worker could not read back: not taken
            reason = ("a number too large (integers have at most 64 bits; send larger ones as text)"
                      if "64-bit" in str(exc) else str(exc))
            raise IntakeError(422, f"the event holds a value ruledesk cannot keep: {reason}", where) from None
        return Inbound(event.id, event.store.name, str(order_id), event.name, text, source=source)

    # ---- writing ---------------------------------------------------------------------------------
    def write(self, items: list[Inbound]) -> list[bool]:
        new = self.store.enqueue(items, self.wall())
        if self.on_enqueued is not None:
            self.on_enqueued(items, new)
        return new

    async def write_async(self, items: list[Inbound]) -> list[bool]:
        """``write`` with group commit: the events of requests arriving while a write is in flight
        are written together by the next one; each request is answered once its events are durable."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await future

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            items = [item for entries, _ in batch for item in entries]
            try:
                if self.inline:
                    await asyncio.sleep(0)  # let the requests already read join this batch
                    new = self.write(items)
                else:
                    new = await asyncio.to_thread(self.write, items)
            except BaseException as exc:  # every request of the batch is told (503)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            start = 0
            for entries, future in batch:
                if not future.done():
                    future.set_result(new[start:start + len(entries)])
                start += len(entries)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_id(value: Any, where: str | None) -> None:
    """An event id is a non-empty string (or an integer, taken as its digits) of valid Unicode."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise IntakeError(422, f'"id" must be a string, not {_kind(value)}', where)
    if value == "":
        raise IntakeError(422, '"id" is empty: send an id, or none (one is derived from the event)', where)
    if isinstance(value, str) and _SURROGATE.search(value):
        raise IntakeError(422, '"id": text with a lone surrogate (\\ud800-\\udfff) is not valid Unicode', where)


def button_press(store: str, order_id: str, label: str, now: float, *, event_id: str | None = None,
                 source: str = "api") -> Inbound:
    """The inbox entry of a press of button ``label`` (as the ruleset spells it) for a stored order;
    its id names the moment of the press unless one is given."""
    event_id = event_id or f"button/{store}/{order_id}/{label}/{now:.6f}"
    body = {"button": label, "store": store, "order_id": order_id, "id": event_id}
    return Inbound(event_id, store, order_id, f'Button "{label}"', to_json_text(body), kind="button", source=source)


def schedule_periods(ruleset: Any, now: float) -> list[tuple[str, str, Any, str]]:
    """The current period of each scheduled rule (``when every D in folder F``) at ``now``: (plan
    key, rule name, trigger, period id).  A period starts at a multiple of D since the epoch (UTC),
    so every daemon, restart and ``ruledesk tick`` agrees on it: its id (``RULE@START``) names the
    scheduled run, and a run of the same period of the same order is one event."""
    periods = []
    for key, plan in ruleset.plans.items():
        if not key.startswith("schedule:"):
            continue
        rule = key[len("schedule:"):]
        trigger = plan.rules[0].trigger
        seconds = max(1, trigger.every.seconds)
        start = _dt.datetime.fromtimestamp(now // seconds * seconds, _dt.timezone.utc)
        periods.append((key, rule, trigger, f"{rule}@{start.strftime('%Y-%m-%dT%H:%M:%SZ')}"))
    return periods


def schedule_run(rule: str, trigger: Any, period: str, store: str, order_id: str) -> Inbound:
    """The inbox entry of one period's run of a scheduled rule on one stored order."""
    body = {"schedule": rule, "period": period, "store": store, "order_id": order_id}
    return Inbound(f"{period}/{store}/{order_id}", store, order_id,
                   f'Every {trigger.every.raw} in folder "{trigger.folder}"', to_json_text(body), kind="schedule",
                   source="schedule")


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) or type(value).__name__ == "Decimal"
        else type(value).__name__)
