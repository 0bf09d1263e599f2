"""Decisions share the live order of their result (no copy per decision) and keep a snapshot only
when a later event of the cascade is about to change that order (copy on write); each decision
still shows the order as its own event's rules left it.  And a decision written as a JSON line
by orjson means what ``json.dumps(decision.to_json())`` means."""

from __future__ import annotations

import copy
import datetime as _dt
import json
from decimal import Decimal

from ruledesk.engine import ActionSpec, Engine, default_actions, default_events
from ruledesk.engine.model.catalogue import NoParams
from ruledesk.engine.model.order import dump_order, to_json
from ruledesk.engine.run.decision import Decision, decision_line
from support import fixed_clock


def break_halfway(ctx, params) -> None:
    ctx.order["order_metadata"]["half"] = "done"
    ctx.order["tag_name"] = "half"
    raise RuntimeError("broke halfway")


def split_off(ctx, params) -> None:
    other = copy.deepcopy(ctx.order)
    other["id"] = f"{ctx.order['id']}-S"
    ctx.emit("Order is Duplicated", {"source_order_id": ctx.order["id"], "store": ""}, order=other)


def engine_of(text: str) -> Engine:
    actions = default_actions()
    actions.register(ActionSpec("Break Halfway", NoParams, break_halfway))
    actions.register(ActionSpec("Split Off", NoParams, split_off, emits=("Order is Duplicated",)))
    return Engine.from_source(text, actions=actions, events=default_events(), clock=fixed_clock)


def process(engine: Engine, order: dict | None = None):
    return engine.process({"event": "Order is Imported", "id": "e", "order": order or {"id": "1"}})


def same_json(decision: Decision) -> None:
    """The JSON line means what the dumped decision means, with and without the explanation."""
    for explain in (False, True):
        line = decision_line(decision, explain)
        assert "\n" not in line
        assert json.loads(line) == json.loads(to_json(decision.to_json(explain=explain), dumped=True))


def test_a_single_decision_shares_the_result_order_without_a_copy() -> None:
    result = process(engine_of('rule "A" { when "Order is Imported" then "Tag Order"(name: "t") }'))
    [decision] = result.decisions
    assert decision._live is result.order and decision._snapshot is None
    assert decision.order == dump_order(result.order) and decision.order["tag_name"] == "t"
    same_json(decision)


def test_later_events_that_do_not_change_the_order_copy_nothing() -> None:
    result = process(engine_of('''
        rule "Move" { when "Order is Imported" then "Set Order Metadata"(field: "a", value: "1") "Move to Folder"(folder: "Hold") }
        rule "Never" { when "Folder is Changed" if order.tag_name == "nope" then "Tag Order"(name: "x") }
    '''))
    imported, moved = result.decisions
    assert (imported.event, moved.event, moved.fired) == ("Order is Imported", "Folder is Changed", [])
    assert imported._live is result.order and moved._live is result.order
    assert imported.order == moved.order == dump_order(result.order)


def test_two_events_changing_the_order_each_show_their_own_state() -> None:
    result = process(engine_of('''
        rule "Move" { when "Order is Imported" then "Set Order Metadata"(field: "a", value: "1") "Move to Folder"(folder: "Hold") }
        rule "Mark" { when "Folder is Changed" then "Set Order Metadata"(field: "b", value: "2") "Tag Order"(name: "moved") }
    '''))
    imported, moved = result.decisions
    assert imported.order["folder"] == "Hold" and imported.order["order_metadata"] == {"a": "1"}
    assert imported.order["tag_name"] is None
    assert moved.order["order_metadata"] == {"a": "1", "b": "2"} and moved.order["tag_name"] == "moved"
    assert imported._live is None and moved._live is result.order  # only the earlier one was copied
    assert moved.order == dump_order(result.order)
    for decision in result.decisions:
        same_json(decision)
    assert json.loads(decision_line(imported))["order"]["order_metadata"] == {"a": "1"}


def test_every_earlier_decision_on_the_order_keeps_its_state() -> None:
    result = process(engine_of('''
        rule "Move" { when "Order is Imported" then "Move to Folder"(folder: "Hold") }
        rule "Note" { when "Folder is Changed" then "Add Note"(text: "moved") }
        rule "Tag" { when "Note Added" then "Tag Order"(name: "noted") }
    '''))
    imported, moved, noted = result.decisions
    assert [len(d.order["order_notes"]) for d in result.decisions] == [0, 1, 1]
    assert [d.order["tag_name"] for d in result.decisions] == [None, None, "noted"]
    assert imported.order["folder"] == moved.order["folder"] == "Hold"


def test_an_action_failing_halfway_leaves_earlier_decisions_as_they_were() -> None:
    result = process(engine_of('''
        rule "Move" { when "Order is Imported" then "Move to Folder"(folder: "Hold") }
        rule "Break" { when "Folder is Changed" then "Break Halfway" }
    '''))
    imported, moved = result.decisions
    assert [(a.action, a.status) for a in moved.actions] == [("Break Halfway", "failed")]
    assert "half" not in imported.order["order_metadata"] and imported.order["tag_name"] is None
    assert moved.order["order_metadata"] == {"half": "done"} and moved.order["tag_name"] == "half"
    for decision in result.decisions:
        same_json(decision)


def test_events_on_other_orders_do_not_copy_this_one() -> None:
    result = process(engine_of('''
        rule "Split" { when "Order is Imported" then "Split Off" "Tag Order"(name: "original") }
        rule "Mark" { when "Order is Duplicated" then "Tag Order"(name: "split") }
    '''))
    imported, split = result.decisions
    assert (imported.order_id, split.order_id) == ("1", "1-S")
    [first, other] = result.orders.values()
    assert imported._live is first and split._live is other
    assert imported.order["tag_name"] == "original" and split.order["tag_name"] == "split"
    for decision in result.decisions:
        same_json(decision)


def test_an_order_given_to_a_decision_is_shown_as_given() -> None:
    decision = Decision("Order is Imported", "1", "sha256:x", order={"id": "1", "n": 1})
    assert decision.order == {"id": "1", "n": 1}
    assert json.loads(decision.to_json_text()) == decision.to_json()
    decision.order = {"id": "2"}
    assert decision.to_json()["order"] == {"id": "2"}


def test_runtime_values_are_written_as_dump_order_writes_them() -> None:
    order = {"id": "1", "order_total": "12.50", "date_added": "2026-11-23 10:00:00",
             "order_metadata": {"exact": Decimal("0.10000000000000000001"), "tiny": 1e-7, "whole": Decimal("3.000"),
                                "text": "héllo\n"},
             "order_items": [{"id": "i", "price": "0.1", "quantity": 2}]}
    result = process(engine_of('rule "A" { when "Order is Imported" then "Set Order Metadata"(field: "m", value: "x") }'),
                     order)
    [decision] = result.decisions
    same_json(decision)
    line = json.loads(decision_line(decision))["order"]
    assert line["order_total"] == 12.5 and line["date_added"] == "2026-11-23 10:00:00"
    assert line["order_metadata"]["exact"] == "0.10000000000000000001" and line["order_metadata"]["whole"] == 3
    assert line["order_items"][0]["price"] == 0.1


def test_what_orjson_refuses_falls_back_on_the_json_path() -> None:
    for value in (2 ** 70, Decimal(2 ** 70), "lone \ud800 surrogate", {1: "int key"}):
        decision = Decision("Order is Imported", "1", "sha256:x", order={"id": "1"})
        decision._share({"id": "1", "odd": value, "at": _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_dt.timezone.utc)})
        line = decision.to_json_text()
        assert line == to_json(decision.to_json(), dumped=True)
        assert line.isascii() or "\ud800" not in line  # a lone surrogate is escaped, never written raw
        assert json.loads(line)["order"]["at"] == "2026-01-02 03:04:05"


# ---- derived event ids -----------------------------------------------------------------------------


def _json_id(name, order, payload, store) -> str:
    """The json path derived_event_id took before orjson (and still takes for what orjson refuses)."""
    import hashlib
    text = json.dumps([name, store, order, payload], sort_keys=True, default=str, ensure_ascii=False,
                      separators=(",", ":"))
    return "evt-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def test_derived_ids_are_the_json_ids_for_ordinary_content_and_deterministic_for_any() -> None:
    from ruledesk.engine.run.engine import derived_event_id

    ordinary = {"id": "1", "z": [1, "ü", None, True], "a": {"y": Decimal("12.50"), "b": "x\n"},
                "at": _dt.datetime(2026, 1, 2, tzinfo=_dt.timezone.utc)}
    assert derived_event_id("Order is Imported", ordinary, {"k": 1}, "s") == _json_id(
        "Order is Imported", ordinary, {"k": 1}, "s")
    for odd in (2 ** 70, "lone \ud800", {1: "int key"}):  # orjson refuses these: the json path decides
        order = {"id": "1", "odd": odd}
        assert derived_event_id("E", order, {}, "s") == _json_id("E", order, {}, "s")
    assert derived_event_id("E", {"n": 1e-7}, {}, "s") == derived_event_id("E", {"n": 1e-7}, {}, "s")
    assert derived_event_id("E", {"a": 1, "b": 2}, {}, "s") == derived_event_id("E", {"b": 2, "a": 1}, {}, "s")
    assert derived_event_id("E", {"a": 1}, {}, "s") != derived_event_id("E", {"a": 2}, {}, "s")


# ---- payload validation ------------------------------------------------------------------------------


def test_an_empty_payload_validated_once_per_model_gives_fresh_equal_payloads() -> None:
    import pytest
    from pydantic import BaseModel, Field

    from ruledesk.engine.model.catalogue import EventSpec
    from ruledesk.engine.run.engine import EventError, _validate_payload, _validate_payload_model

    class Nested(BaseModel):
        tags: list[str] = []  # pydantic copies these defaults for every instance
        meta: dict[str, str] = {}
        n: int | None = None

    ticks = iter(range(1000))

    class Stamped(BaseModel):  # a default factory: a fresh value every time, never kept
        tick: int = Field(default_factory=lambda: next(ticks))

    class Required(BaseModel):
        note: str

    from ruledesk.engine.run.engine import _EMPTY_PAYLOADS

    stamped = EventSpec("Stamped Thing", Stamped)
    assert [_validate_payload(stamped, {}) for _ in range(3)] == [{"tick": 0}, {"tick": 1}, {"tick": 2}]
    assert Stamped not in _EMPTY_PAYLOADS
    spec = EventSpec("Nested Thing", Nested)
    first, second = _validate_payload(spec, {}), _validate_payload(spec, {})
    assert first == second == _validate_payload_model(spec, {}) == {"tags": [], "meta": {}, "n": None}
    first["tags"].append("x")
    first["meta"]["k"] = "v"
    assert _validate_payload(spec, {}) == {"tags": [], "meta": {}, "n": None}  # nothing shared
    assert second["tags"] == [] and Nested in _EMPTY_PAYLOADS
    required = EventSpec("Needs Note", Required)
    for _ in range(2):  # a refused empty payload is refused every time, with the same message
        with pytest.raises(EventError, match='bad payload for "Needs Note": note: Field required'):
            _validate_payload(required, {})
    assert _validate_payload(spec, {"n": 3}) == {"tags": [], "meta": {}, "n": 3}


def test_an_action_sees_the_moment_the_rules_were_evaluated_at() -> None:
    from support import NOW

    ticks = iter(NOW + _dt.timedelta(seconds=s) for s in range(100))
    engine = engine_of('rule "A" { when "Order is Imported" if now() > date("2000-01-01") '
                       'then "Set Order Metadata Timestamp"(field: "at") "Set Order Metadata Timestamp"(field: "again") }')
    engine.clock = lambda: next(ticks)
    [decision] = process(engine).decisions
    assert decision.fired == ["A"]
    assert decision.order["order_metadata"] == {"at": "2026-11-23 12:00:00", "again": "2026-11-23 12:00:00"}


def test_action_parameters_are_validated_as_model_validate_validates_them() -> None:
    from pydantic import BaseModel, ValidationError

    from ruledesk.engine.run.engine import _validation_message

    class CountParams(BaseModel):
        n: int

    seen = []
    actions = default_actions()
    actions.register(ActionSpec("Count", CountParams, lambda ctx, params: seen.append(params)))
    engine = Engine.from_source('rule "A" { when "Order is Imported" then "Count"(n: order.email_count) }',
                                actions=actions, events=default_events(), clock=fixed_clock)
    [good] = process(engine, {"id": "1", "email_count": "12"}).decisions
    assert good.actions[0].status == "done" and seen == [CountParams(n=12)] and type(seen[0]) is CountParams
    [bad] = process(engine, {"id": "1"}).decisions  # email_count: null
    try:
        CountParams.model_validate({"n": None})
    except ValidationError as exc:
        expected = _validation_message(exc)
    assert (bad.actions[0].status, bad.actions[0].error) == ("failed", expected) and expected.startswith("n: ")
