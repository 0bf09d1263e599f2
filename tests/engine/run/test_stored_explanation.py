"""A stored decision keeps its explanation compactly (``Decision.why``); ``stored_explanation``
rebuilds, with the ruleset it names, exactly what ``to_json(explain=True)`` gives."""

from __future__ import annotations

import json
import sys

import pytest

from support import ROOT, fixed_clock
from ruledesk.engine.model.order import load_json
from ruledesk.engine.run.decision import stored_explanation
from ruledesk.engine.run.engine import Engine

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import workload as W  # noqa: E402


def _check(engine: Engine, events: list) -> int:
    compared = 0
    for event in events:
        for decision in engine.process(event).decisions:
            stored = load_json(decision.stored_text())
            assert "explain" not in stored and stored["fired"] == decision.fired
            assert stored_explanation(stored["why"], engine.ruleset) == decision.to_json(explain=True)["explain"]
            compared += 1
    return compared


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_rules_and_orders(seed):
    text, _ = W.make_rules(60, seed)
    events = W.make_events(150, seed)
    for event in events:
        event.pop("store", None)
    assert _check(Engine.from_source(text), events) == 150


def test_example_rules_and_orders():
    engine = Engine.from_paths(ROOT / "rules.d", clock=fixed_clock)
    lines = (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines()
    assert _check(engine, [json.loads(line) for line in lines if line.strip()]) >= 20


def test_exact_decimals_dates_and_notes_survive():
    engine = Engine.from_source('''
rule "Big" { when "Order is Imported" if order.order_total > 50.00 then "Add Note"(text: "big") }
rule "Old" { when "Order is Imported" if order.date_added < date("2020-01-01 00:00:00") then "Add Note"(text: "old") }
rule "Stop" { when "Order is Imported" then "Stop Processing Rules" }
rule "After" { when "Order is Imported" if order.email == "x" then "Add Note"(text: "after") }
''', clock=fixed_clock)
    decision = engine.process({"id": "1", "order_total": "12.50", "date_added": "2026-01-02 03:04:05"}).decisions[0]
    why = load_json(decision.stored_text())["why"]
    assert str(why[0][3][1]) == "50.00"  # the exponent as written in the rule, not 50
    assert why[1][3][0] == {"$date": "2026-01-02 03:04:05"}
    assert why[3][2] is None and "stopped" in why[3][3]
    explained = stored_explanation(why, engine.ruleset)
    assert explained == decision.to_json(explain=True)["explain"]
    assert explained[1]["compared"] == 'date("2026-01-02 03:04:05") < date("2020-01-01 00:00:00")'
