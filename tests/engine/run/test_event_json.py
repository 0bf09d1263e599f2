"""``Engine.event_json(text)`` against ``Engine.event(load_json(text))``: the same Event (name, order with
its key order and types, payload, store, id) or the same exception, for random event lines and bare
orders, valid and hostile; and ``ruledesk run``'s reader words its refusals as before."""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruledesk.engine.cli.run import _parse_line, _Rejected
from ruledesk.engine.model.order import Order, load_json
from ruledesk.engine.model.settings import store_settings
from ruledesk.engine.run import engine as engine_module
from ruledesk.engine.run.engine import Engine, EventError

ROOT = Path(__file__).resolve().parents[3]


def _fastorder_tests():
    """The strategies and the exact comparison of tests/engine/model/test_fastorder.py (by path: the
    test directories are no packages)."""
    path = ROOT / "tests" / "engine" / "model" / "test_fastorder.py"
    spec = importlib.util.spec_from_file_location("_fastorder_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_F = _fastorder_tests()
FREE, JSON, KEYS, TEXT, TYPED_VALUES = _F.FREE, _F.JSON, _F.KEYS, _F.TEXT, _F.TYPED_VALUES
likely_order, record, same, to_text = _F.likely_order, _F.record, _F.same, _F.to_text
PROPERTY = settings(max_examples=300, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

RULES = 'rule "noop" { when "Order is Imported" then "Tag Order"(name: "x") }'
OPEN = Engine.from_source(RULES)  # no stores configured: an event may give store settings
STORES = Engine.from_source(RULES, stores=[store_settings("acme"), store_settings("globex")])


def outcome(call, *args) -> Any:
    try:
        event = call(*args)
    except Exception as exc:  # noqa: BLE001 -- the exception is the outcome compared
        return ("raised", type(exc).__name__, str(exc))
    return event


def same_event(a: Any, b: Any) -> None:
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert a == b
        return
    assert (a.name, a.id, a.store.name) == (b.name, b.id, b.store.name)
    assert a.store == b.store
    same(a.order, b.order)
    same(a.payload, b.payload, "payload")
    assert a._namespace == b._namespace and a._store_view == b._store_view


def check(text: str) -> None:
    for engine in (OPEN, STORES):
        typed = outcome(engine.event_json, text)
        same_event(typed, outcome(lambda t: engine.event(load_json(t)), text))
        same_event(outcome(engine.event_json, text.encode("utf-8", "surrogatepass")), typed)
        # ruledesk run's reader: its refusals (_Rejected) or the engine's
        same_event(outcome(lambda t: engine.event_json(t, load=_parse_line), text),
                   outcome(lambda t: engine.event(_parse_line(t)), text))


EVENT_NAMES = st.one_of(st.sampled_from(["Order is Imported", "Folder is Changed", "Note Added"]), st.sampled_from(["Order is Imported", "Folder is Changed", "folder is changed", "Note Added",
                                         "Item Changed", "Order Imported", "", "Shipment is Added"]),
                        st.text(max_size=6), st.integers(), st.none())
PAYLOADS = st.one_of(st.none(), st.just({}), st.just([]), st.just(""), st.just(0),
                     st.just({"from_folder": "New", "to_folder": "Shipped"}), st.just({"note": "hi", "x": 1.50}),
                     st.just({"note": 5}), st.just({"item_id": 12}), st.dictionaries(KEYS, FREE, max_size=3), JSON)
STORE_VALUES = st.one_of(st.none(), st.just(""), st.just("acme"), st.just("globex"), st.just("acne"), st.just({}),
                         st.just({"name": "acme"}), st.just({"name": ""}), st.just({"name": "x", "currency": 5}),
                         st.just({"api_key": "k"}), st.just([]), st.integers(), TEXT)
IDS = st.one_of(st.none(), st.text(max_size=6), st.integers(), st.sampled_from([2 ** 63, 2 ** 64, -(2 ** 63), 10 ** 30,
                                                                                 True, 1.5, Decimal("2.50")]),
                st.just({"a": 1}), st.just([]))
# Orders the typed path takes (mostly): Order Desk's strings, [] for empty maps, no extras.
MONEY = st.sampled_from(["1.50", "0", "", "12", "1e3", None, "x"])
CLEAN_ORDERS = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=5), "email": st.one_of(st.none(), st.text(max_size=5)), "order_total": MONEY,
    "email_count": st.sampled_from(["1", 2, None, "2.0"]), "folder": st.sampled_from(["", "New", None]),
    "date_added": st.sampled_from(["2026-11-21 14:03:11", "", None, "2024-05-01T15:45:00+02:00"]),
    "shipping": st.one_of(st.just([]), st.fixed_dictionaries({}, optional={"city": st.text(max_size=4)})),
    "checkout_data": st.one_of(st.just([]), st.dictionaries(st.text(max_size=3), JSON, max_size=2)),
    "order_items": st.lists(st.fixed_dictionaries({}, optional={
        "price": MONEY, "quantity": st.sampled_from(["1", 3, None]), "name": st.text(max_size=4),
        "variation_list": st.one_of(st.just([]), st.dictionaries(st.text(max_size=3), st.text(max_size=3),
                                                                 max_size=2))}), max_size=3)})
ORDERS = st.one_of(CLEAN_ORDERS, CLEAN_ORDERS, CLEAN_ORDERS, likely_order(),
                   record(Order, values=TYPED_VALUES, extras=st.just({})), record(Order, values=TYPED_VALUES, extras=st.one_of(st.just({}), st.just({}),
                                                                                      st.dictionaries(KEYS, FREE,
                                                                                                      max_size=1))),
                   record(Order), st.just({}), st.just([]), st.none(), st.text(max_size=3))


@st.composite
def event_lines(draw) -> str | None:
    order = draw(ORDERS)
    if draw(st.integers(0, 3)) == 0:
        line: Any = order  # a bare order
    else:
        fields = {"event": draw(EVENT_NAMES), "order": order, "payload": draw(PAYLOADS), "store": draw(STORE_VALUES),
                  "id": draw(IDS)}
        keys = [key for key in fields if draw(st.integers(0, 4))]  # some keys missing
        if draw(st.booleans()):
            keys = ["event", "order"] + [key for key in keys if key not in ("event", "order")]
        draw(st.randoms()).shuffle(keys)
        line = {key: fields[key] for key in keys}
        if draw(st.integers(0, 6)) == 0:
            line[draw(KEYS)] = draw(JSON)  # an unknown key (or a duplicate "order", "event"...)
    try:
        return to_text(line)
    except (TypeError, ValueError, RecursionError):
        return None


@PROPERTY
@given(event_lines())
def test_an_event_line_from_text_is_the_event_of_its_dict(text):
    if text is not None:
        check(text)


@PROPERTY
@given(st.one_of(event_lines().map(lambda t: t and t[:len(t) * 2 // 3]),  # cut short: invalid JSON
                 st.sampled_from(['{"event": "Order is Imported", "order": {}, "order": []}',
                                  '{"event": "Order is Imported", "event": "Nope", "order": {}}',
                                  '{"event": "Order is Imported", "order": {"id": "1"}, "id": null}',
                                  '{"event": "Order is Imported", "order": {"id": "\\ud800"}}',
                                  '{"event": "Order is Imported", "order": {}, "x": ' + "1" * 5000 + "}",
                                  '{"order": {}, "id": 5}', '{"id": "1", "note": "has \\"event\\" inside"}',
                                  '{"\\u0065vent": "Note Added", "order": {}}', "[]", "null", '"event"', "",
                                  '{"event": "Order is Imported", "order": {}, "id": ' + "9" * 30 + "}",
                                  '{"event": "Order is Imported", "order": {"email": NaN}}'])))
def test_hostile_event_lines_are_refused_as_the_dict_path_refuses_them(text):
    if text is not None:
        check(text)


def test_the_example_lines_take_the_typed_path_and_give_the_events_of_their_dicts():
    typed = 0
    for line in (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        check(line)
        try:
            typed += engine_module._typed_event(line, load_json) is not None
        except Exception:  # noqa: BLE001 -- not taken: the dict path
            pass
    assert typed >= 10  # most of them: the typed path is the common one


def test_an_envelope_with_an_id_is_not_read_a_second_time():
    def load(text):
        raise AssertionError("read again")

    line = json.dumps({"event": "Order is Imported", "order": {"id": "7", "order_total": "1.50"}, "id": "e-1"})
    event = OPEN.event_json(line, load=load)
    assert (event.name, event.id, event.order["order_total"]) == ("Order is Imported", "e-1", Decimal("1.50"))


def test_run_words_a_line_that_is_not_an_object_as_before():
    with pytest.raises(_Rejected, match="expected a JSON object"):
        OPEN.event_json("[1]", load=_parse_line)
    with pytest.raises(_Rejected, match="invalid JSON"):
        OPEN.event_json('{"event": ', load=_parse_line)
    with pytest.raises(EventError, match="unknown event"):
        OPEN.event_json('{"event": "Nope", "order": {}}', load=_parse_line)


@PROPERTY
@given(CLEAN_ORDERS, st.sampled_from(["Order is Imported", "Folder is Changed", "note added"]),
       st.sampled_from([None, {}, {"from_folder": "New", "to_folder": "Shipped"}, {"note": "n", "v": 1.50}]),
       st.sampled_from([None, "", "acme", "nope", {}, {"name": "acme"}]), st.one_of(st.none(), st.text(max_size=4),
                                                                                   st.integers()), st.booleans())
def test_well_formed_event_lines_are_the_events_of_their_dicts(order, name, payload, store, event_id, bare):
    check(to_text(order if bare else {"event": name, "order": order, "payload": payload, "store": store,
                                      "id": event_id}))
