"""The benchmark's workload and its correctness checks, on a tiny size.

A correctness test, not a timing test: nothing here asserts how fast anything is.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

from support import ROOT

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import workload as W  # noqa: E402
from ruledesk.engine import Engine  # noqa: E402


@pytest.fixture(scope="module")
def small():
    specs = W.make_rule_specs(80, seed=3)
    text, table = W.rules_text(specs), W.python_rules(specs)
    engine = Engine.from_source(text, "bench.rules")
    events = [engine.event(raw) for raw in W.make_events(300, seed=3)]
    return specs, text, table, engine, events


def test_generators_are_deterministic():
    assert W.make_orders(20, seed=5) == W.make_orders(20, seed=5)
    assert W.make_orders(20, seed=5) != W.make_orders(20, seed=6)
    assert W.make_events(20, seed=5) == W.make_events(20, seed=5)
    assert W.make_rules(30, seed=5)[0] == W.make_rules(30, seed=5)[0]


def test_orders_look_like_order_desk_orders():
    orders = W.make_orders(200, seed=2)
    assert len({o["id"] for o in orders}) == 200
    assert {o["shipping"]["country"] for o in orders} - {None} == set(W.COUNTRIES)
    assert {o["shipping_method"] for o in orders} - {None} == set(W.SHIPPING_METHODS)
    assert all(1 <= len(o["order_items"]) <= 5 for o in orders)
    assert all(isinstance(o["order_total"], str) for o in orders)  # numeric strings, like Order Desk
    # some missing values, so null handling is exercised
    assert any(o["email"] is None for o in orders)
    assert any(o["order_total"] == "" for o in orders)
    assert any(i["code"] is None for o in orders for i in o["order_items"])


def test_events_spread_over_the_ten_events_and_validate(small):
    *_, engine, events = small
    assert {e.name for e in events} == set(W.EVENTS)
    folder_changed = next(e for e in events if e.name == "Folder is Changed")
    assert set(folder_changed.payload) >= {"from_folder", "to_folder"}
    order = events[0].order
    assert order["order_total"] is None or isinstance(order["order_total"], Decimal)
    assert isinstance(order["order_items"][0]["quantity"], (int, type(None)))


def test_rules_have_two_to_four_clauses_of_the_five_kinds(small):
    specs, text, table, engine, _ = small
    assert len(engine.ruleset.rules) == len(specs) == 80
    assert all(2 <= len(s["clauses"]) <= 4 for s in specs)
    assert {k for s in specs for k in s["kinds"]} == set(W.CLAUSE_KINDS)
    assert set(table) <= set(W.EVENTS)
    # the lambdas are dispatched in the engine's evaluation order
    for event, rules in table.items():
        assert [name for name, _ in rules] == [r.name for r in engine.ruleset.plan(event).rules]


def test_ruledesk_and_lambdas_agree(small):
    _, _, table, engine, events = small
    stats = W.check_equivalence(engine, table, events, sample=500)
    assert stats["events"] == len(events)
    assert stats["matches"] > 0  # the workload is not trivially all-false ...
    assert stats["events_with_matches"] < stats["events"]  # ... nor all-true


def test_equivalence_check_catches_a_disagreement(small):
    _, _, table, engine, events = small
    broken = {event: list(rules) for event, rules in table.items()}
    event = events[0].name
    name, _ = broken[event][0]
    broken[event][0] = (name, lambda o: True)
    with pytest.raises(W.EquivalenceError):
        W.check_equivalence(engine, broken, [e for e in events if e.name == event])


def test_lambdas_are_null_safe():
    specs = W.make_rule_specs(200, seed=9)
    table = W.python_rules(specs)
    engine = Engine.from_source("", "empty.rules")
    bare = engine.event({"event": "Order is Imported", "order": {"id": "1", "order_items": [{"id": "a"}]}})
    for rules in table.values():
        for _, fn in rules:
            assert fn(bare.order) is False


def test_cli_fires_what_engine_match_says(small, tmp_path):
    """The end-to-end measurement's check: `ruledesk run --dry-run --format json` agrees with match."""
    from bench import run

    _, text, _, engine, _ = small
    rules = tmp_path / "bench.rules"
    rules.write_text(text, encoding="utf-8")
    result = run.check_cli(engine, rules, W.make_events(60, seed=3), tmp_path)
    assert result == {"checked": 60}


def test_the_plain_generated_reference_agrees_and_the_check_catches_a_disagreement(small):
    from bench import run

    specs, _, _, engine, events = small
    plain = W.make_plain(specs)
    run.check_plain(engine, plain, events)
    assert "def match_0(o):" in W.plain_source(specs) and "out.append(" in W.plain_source(specs)
    broken = W.make_plain([dict(s, clauses=[("", "True")]) if i == 0 else s for i, s in enumerate(specs)])
    with pytest.raises(W.EquivalenceError):
        run.check_plain(engine, broken, [e for e in events if e.name in specs[0]["events"]])


def test_the_measurements_run_on_a_tiny_workload(small):
    """The timing functions themselves (no number is asserted but their shape and sign)."""
    import json as _json

    from bench import run

    specs, text, table, _, events = small
    traced = Engine.from_source(text, "bench.rules", explain="full")
    cfg = {"min_rep_s": 0.001, "repeat": 1}
    raw = W.make_events(20, seed=3)
    validated = [traced.event(r) for r in raw]
    matching = run.measure_matching(traced, table, W.make_plain(specs), validated, cfg)
    assert matching["a_us"] > 0 and matching["p_us"] > 0 and matching["b_us"] > 0
    process = run.measure_process(traced, table, validated, [_json.dumps(r) for r in raw], cfg)
    assert process["process_text_us"] > process["json_loads_us"] > 0
    assert process["text_vs_reference_x"] == process["process_text_us"] / (process["json_loads_us"] + process["lambdas_us"])


def test_the_validation_benchmark_checks_and_reports_every_candidate(monkeypatch):
    from bench import validation as V

    monkeypatch.setattr(V, "QUICK", {"min_rep_s": 0.0005, "repeat": 1})
    texts = V.example_texts()
    lines = (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(texts) == len([line for line in lines if line.strip()]) > 10 and all(t.startswith("{") for t in texts)
    assert V.big_order_text().count('"code"') == V.BIG_ITEMS
    results = V.measure_validation(quick=True)
    for numbers in results["workloads"].values():
        assert {"json.loads", "json.loads+Decimal", "msgspec+Decimal", "ours from text", "ours from dict",
                "pydantic from dict"} <= set(numbers["us"])
        assert numbers["vs_json"]["json.loads"] == 1.0
    assert len(results["targets"]) == 2 * len(results["workloads"]) == 6  # two targets per workload
    table = V.report(results)
    assert "| ours from text |" in table and "x json.loads" in table
