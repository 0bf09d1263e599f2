"""Building a ruleset: lazily compiled functions (one definition under concurrency), ``warm()``,
and a build that leaves the garbage collector working for every other thread."""

from __future__ import annotations

import gc
import re
import threading
import weakref

import pytest

from ruledesk.engine import Engine, default_actions, default_events
from ruledesk.engine.lang import compiler
from ruledesk.engine.lang.ruleset import build_ruleset
from support import fixed_clock

RULES = "\n".join(f'''
rule "r{i}" {{
    when "Order is Imported", "Order Confirmed"
    if order.shipping.country == "C{i}" and any item in order.order_items where item.quantity > {i}
    then "Tag Order"(name: "t{i}")
         for item in order.order_items where item.code == "X" {{ "Set Item Metadata"(field: "f", value: "v") }}
}}''' for i in range(40)) + '''
rule "always" { when button "Go" then "Add Note"(text: "hi {{ order.id }}") }
'''
ORDER = {"id": "1", "shipping": {"country": "C3"}, "order_items": [{"code": "X", "quantity": 9}]}


def _build(trace: bool = False):
    return build_ruleset({"r.rules": RULES}, default_events(), default_actions(), trace=trace)


@pytest.mark.parametrize("trace", [False, True])
def test_after_warm_nothing_compiles_on_first_use(monkeypatch, trace):
    ruleset = _build(trace)
    assert ruleset.warm() is ruleset

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled on first use after warm()")

    monkeypatch.setattr(compiler, "compile", no_compiling, raising=False)
    engine = Engine(ruleset, events=default_events(), actions=default_actions(), clock=fixed_clock)
    for explain in ("off", "deciding", "full") if trace else ("off", "deciding"):
        decisions = engine.process({"event": "Order is Imported", "order": ORDER}, dry_run=True, explain=explain).decisions
        for decision in decisions:
            decision.to_json(explain=True)  # reads every deciding clause's values
    assert "r3" in decisions[0].fired
    assert engine.process({"event": "Order Confirmed", "order": {"id": "2"}}, dry_run=True).decisions[0].fired == []


def test_without_warm_the_functions_compile_on_first_use(monkeypatch):
    ruleset = _build()
    calls = []
    monkeypatch.setattr(compiler, "compile", lambda *args: calls.append(args[1]) or compile(*args), raising=False)
    engine = Engine(ruleset, events=default_events(), actions=default_actions(), clock=fixed_clock)
    engine.process({"event": "Order is Imported", "order": ORDER}, dry_run=True)
    assert calls  # the control for the test above: the patch does see lazy compilation


def _asked_at_once(ask, threads: int = 8) -> list:
    """What ``ask()`` returned in each of ``threads`` threads started to ask at the same moment."""
    start = threading.Barrier(threads)
    seen = []

    def one():
        start.wait()
        seen.append(ask())

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(seen) == threads
    return seen


def test_match_why_is_defined_once_when_threads_ask_at_the_same_time(monkeypatch):
    ruleset = _build()
    plan = ruleset.plan("Order is Imported")
    seen = _asked_at_once(lambda: plan.match_why)
    assert len({id(fn) for fn in seen}) == 1 and seen[0] is plan.match_why
    fired, missed, _ = plan.match_why({"shipping": {"country": "C3"}, "order_items": []}, {}, {}, None)
    assert fired == [] and all(plan.deciding(i, missed) is not None for i in range(40))


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_build_leaves_the_collector_on_for_other_threads():
    """Another thread that makes cyclic garbage while a ruleset builds sees the collector enabled
    and gets its garbage collected during the build (``gc.disable()`` would stop both)."""
    building = threading.Event()
    done = threading.Event()
    observed = {"disabled": 0, "made": 0, "collected": 0}
    collected = []

    def make_garbage():
        building.wait()
        while not done.is_set():
            if not gc.isenabled():
                observed["disabled"] += 1
            cycle = _Cycle()
            weakref.finalize(cycle, collected.append, 1)
            del cycle
            observed["made"] += 1
        observed["collected"] = len(collected)

    worker = threading.Thread(target=make_garbage)
    worker.start()
    was_enabled = gc.isenabled()
    try:
        building.set()
        for _ in range(3):
            build_ruleset({"r.rules": RULES}, default_events(), default_actions())
    finally:
        done.set()
        worker.join()
    assert gc.isenabled() == was_enabled
    assert observed["disabled"] == 0
    assert observed["made"] > 1000 and observed["collected"] > observed["made"] // 2
    assert gc.get_freeze_count() == 0  # nothing is left frozen after the build


def test_rules_testing_literals_compile_without_python_warnings() -> None:
    import warnings

    text = '''rule "Literals" { when "Order is Imported"
        if "abc" contains "b" and "x" != "y" and "a" starts with "a" and not ("q" == null) and 3 != null
        then "Tag Order"(name: "x") }'''
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = Engine.from_source(text).ruleset.warm()
    assert [str(w.message) for w in caught] == []
    assert Engine(engine).process({"id": "1"}, dry_run=True).decisions[0].fired == ["Literals"]


def test_rules_that_loop_over_a_list_the_same_way_share_one_helper_defined_on_first_use(monkeypatch):
    text = '''
rule "a" { when "Order is Imported" if any item in order.order_items where item.quantity > 2 then "Tag Order"(name: "a") }
rule "b" disabled { when "Order is Imported"
    if order.shipping.country == "CA" and any item in order.order_items where item.quantity > 2
    then "Tag Order"(name: "b") }
rule "c" { when "Order is Imported" if any item in order.order_items where item.quantity > 5 then "Tag Order"(name: "c") }
'''
    ruleset = build_ruleset({"r.rules": text}, default_events(), default_actions())
    a, b, c = (ruleset.rule(name) for name in "abc")
    assert not any("why" in rule._sources for rule in (a, b, c))  # written on first use only
    calls = []
    monkeypatch.setattr(compiler, "compile", lambda *args: calls.append(args[1]) or compile(*args), raising=False)
    few, many = {"order_items": [{"quantity": 3}]}, {"order_items": [{"quantity": 9}], "shipping": {"country": "CA"}}
    assert b.why(many, {}, {}, None) is None  # a disabled rule (in no event's plan) too
    assert calls[0] == "<loop helpers of the rules' why functions>" and len(calls) == 2
    assert a.why(few, {}, {}, None) is None and c.why(few, {}, {}, None) == (0,)
    assert c.why(many, {}, {}, None) is None and len(calls) == 5  # a's helper is b's: compiled once
    assert calls.count("<loop helpers of the rules' why functions>") == 2
    loops = {rule.name: set(re.findall(r"_loop\d+", rule.source("why"))) for rule in (a, b, c)}
    assert loops["a"] == loops["b"] != loops["c"] and len(loops["a"]) == len(loops["c"]) == 1
    assert "def " not in a.source("why").replace("def why(", "")  # the helpers are shared, not repeated


def test_a_rules_why_is_written_once_when_threads_ask_at_the_same_time_with_its_own_constants():
    long = "x" * 150  # a long text is a constant of the namespace, like a list's set
    text = f'''
rule "off" disabled {{ when "Order is Imported"
    if order.shipping_method in ["Ground", "Air"] and order.email != "{long}" then "Tag Order"(name: "x") }}'''
    rule = build_ruleset({"r.rules": text}, default_events(), default_actions()).rule("off")
    seen = _asked_at_once(lambda: rule.why)
    assert len({id(fn) for fn in seen}) == 1
    assert rule.why({"shipping_method": "Ground", "email": "a"}, {}, {}, None) is None
    assert rule.why({"shipping_method": "Sea"}, {}, {}, None) == (0, "Sea", ["Ground", "Air"])
