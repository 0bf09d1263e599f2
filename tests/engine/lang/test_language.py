"""The rule language and the engine against LANGUAGE.md, as data: YAML cases in tests/engine/lang/cases/.

A case file holds a list of cases.  A case is run through the public API only:
``Engine.from_source(rules, "case.rules", clock=<2026-11-23 12:00 UTC>)`` then
``engine.process({"event", "order", "payload", "store"}, dry_run=True).decisions``.

Input keys: ``name``, ``rules`` (rule source text), ``event`` (default "Order is Imported"),
``order`` (Order Desk order JSON), ``payload``, ``store`` (a name or an object) and
``engine`` (extra ``Engine`` options such as ``max_depth`` or ``max_firings``).

Expectations (all optional but ``fired``):

- ``fired``: the exact list of rule names the first decision fired, in order.
- ``actions``: the first decision's actions, in order and exactly as many:
  ``{action, params (a subset), status, rule, error (a substring)}``.
- ``emitted``: the event names the first decision emitted.
- ``final_order``: a subset of the order after the whole cascade, compared with
  ``dump_order``'s JSON-ish values.  (The input already uses the key ``order``.)  Maps are
  compared as subsets, lists element by element with the same length; the string
  ``<absent>`` says a key must not be there.
- ``decisions``: every decision in processing order: an event name, or a map
  ``{event, fired, emitted, actions, stopped}`` checked like the keys above.
- ``stopped``: a substring of the stop reason of some decision.  Without it no decision
  may be stopped.
- ``error``: the rules must not build; a substring of the ``RulesetError``'s diagnostics.

No action may fail unless an expected action says ``status: failed``.
``xfail: reason`` marks a case that states what LANGUAGE.md says and the engine does not do
yet (strict: the case fails once the engine is fixed, so the mark gets removed).
"""

from __future__ import annotations

from typing import Any

import pytest

from ruledesk.engine import Decision, Engine, RulesetError
from ruledesk.engine.model.order import dump_value
from support import CASES, expected_actions, fixed_clock

ABSENT = "<absent>"
CASE_KEYS = {"name", "rules", "event", "order", "payload", "store", "engine", "fired", "actions", "emitted",
             "final_order", "decisions", "stopped", "error", "xfail"}
DECISION_KEYS = {"event", "fired", "emitted", "actions", "stopped"}
ACTION_KEYS = {"action", "params", "status", "rule", "error"}


def _params() -> list:
    return [
        pytest.param(case, id=case_id,
                     marks=[pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else [])
        for case_id, case in CASES
    ]


def run_case(case: dict[str, Any]) -> list[Decision]:
    engine = Engine.from_source(case["rules"], "case.rules", clock=fixed_clock, **(case.get("engine") or {}))
    data = {"event": case.get("event", "Order is Imported"), "order": case.get("order") or {},
            "payload": case.get("payload") or {}, "store": case.get("store") or {}}
    return engine.process(data, dry_run=True).decisions


def assert_subset(want: Any, got: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: want a map, got {got!r}"
        for key, value in want.items():
            if value == ABSENT:
                assert key not in got, f"{where}.{key}: want no such key, got {got[key]!r}"
                continue
            assert key in got, f"{where}.{key}: missing (have {sorted(got)})"
            assert_subset(value, got[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{where}: want a list, got {got!r}"
        assert len(want) == len(got), f"{where}: want {len(want)} elements, got {len(got)}: {got!r}"
        for index, (w, g) in enumerate(zip(want, got)):
            assert_subset(w, g, f"{where}[{index}]")
    else:
        assert same_scalar(want, got), f"{where}: want {want!r}, got {got!r}"


def same_scalar(want: Any, got: Any) -> bool:
    """Equal and of the same kind: a number never equals a bool or a numeric string."""
    kinds = (bool, str, type(None))
    for kind in kinds:
        if isinstance(want, kind) or isinstance(got, kind):
            return isinstance(want, kind) and isinstance(got, kind) and want == got
    return want == got


def check_actions(want: list[dict[str, Any]], decision: Decision, where: str) -> None:
    got = [record.to_json() for record in decision.actions]
    shown = [(a["action"], a["params"], a["status"], a["error"]) for a in got]
    assert len(want) == len(got), f"{where}: want {len(want)} actions, got {shown}"
    for index, (w, g) in enumerate(zip(want, got)):
        unknown = set(w) - ACTION_KEYS
        assert not unknown, f"unknown action expectation keys {unknown}"
        at = f"{where}[{index}]"
        assert g["action"] == w["action"], f"{at}: want action {w['action']!r}, got {g['action']!r}"
        if "params" in w:
            assert_subset(w["params"], g["params"], f"{at}.params")
        if "status" in w:
            assert g["status"] == w["status"], f"{at}: want status {w['status']!r}, got {g['status']!r} ({g['error']})"
        if "rule" in w:
            assert g["rule"] == w["rule"], f"{at}: want rule {w['rule']!r}, got {g['rule']!r}"
        if "error" in w:
            assert w["error"] in (g["error"] or ""), f"{at}: want an error with {w['error']!r}, got {g['error']!r}"


def check_decision(want: dict[str, Any], decision: Decision, where: str) -> None:
    if "fired" in want:
        assert decision.fired == want["fired"], f"{where}: want fired {want['fired']}, got {decision.fired}"
    if "emitted" in want:
        assert decision.emitted == want["emitted"], f"{where}: want emitted {want['emitted']}, got {decision.emitted}"
    if "actions" in want:
        check_actions(want["actions"], decision, f"{where}.actions")
    if "stopped" in want:
        reason = (decision.stopped or {}).get("reason", "")
        assert decision.stopped is not None and want["stopped"] in reason, \
            f"{where}: want a stop with {want['stopped']!r}, got {decision.stopped}"


@pytest.mark.parametrize("case", _params())
def test_case(case: dict[str, Any]) -> None:
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"unknown case keys {unknown}"
    if "error" in case:
        with pytest.raises(RulesetError) as info:
            run_case(case)
        assert case["error"] in str(info.value), str(info.value)
        return
    decisions = run_case(case)
    first = decisions[0]
    assert "fired" in case, "every case says which rules fire"
    check_decision({k: case[k] for k in ("fired", "emitted", "actions") if k in case}, first, "decision[0]")
    if "decisions" in case:
        got_events = [d.event for d in decisions]
        want_events = [w if isinstance(w, str) else w["event"] for w in case["decisions"]]
        assert got_events == want_events, f"want decisions {want_events}, got {got_events}"
        for index, (w, d) in enumerate(zip(case["decisions"], decisions)):
            if isinstance(w, dict):
                assert not set(w) - DECISION_KEYS, f"unknown decision keys {set(w) - DECISION_KEYS}"
                check_decision(w, d, f"decision[{index}]")
    if "final_order" in case:
        assert_subset(case["final_order"], dump_value(decisions[-1].order), "order")
    stops = [d.stopped for d in decisions if d.stopped is not None]
    if "stopped" in case:
        assert any(case["stopped"] in s.get("reason", "") for s in stops), \
            f"want a stop with {case['stopped']!r}, got {stops}"
    else:
        assert not stops, f"nothing should stop, got {stops}"
    failures_expected = any(a.get("status") == "failed" for a in expected_actions(case))
    if not failures_expected:
        failed = [(a.rule, a.action, a.error) for d in decisions for a in d.actions if a.status == "failed"]
        assert not failed, f"no action should fail, got {failed}"


def test_cases_exist() -> None:
    assert len(CASES) >= 100
    ids = [case_id for case_id, _ in CASES]
    assert len(ids) == len(set(ids)), "case names must be unique within a file"


@pytest.mark.parametrize(("change", "message"), [
    ({"fired": []}, "want fired"),
    ({"final_order": {"tag_name": "y"}}, "order.tag_name"),
    ({"final_order": {"order_metadata": {"k": "<absent>"}}}, "want no such key"),
    ({"final_order": {"order_items": []}}, "want 0 elements"),
    ({"final_order": {"order_total": "12.5"}}, "order.order_total"),
    ({"actions": [{"action": "Tag Order", "params": {"name": "x"}, "status": "dry-run"},
                  {"action": "Set Order Metadata"}]}, "want status"),
    ({"actions": []}, "want 0 actions"),
    ({"emitted": ["Note Added"]}, "want emitted"),
    ({"decisions": ["Order is Imported", "Note Added"]}, "want decisions"),
    ({"stopped": "depth"}, "want a stop"),
], ids=["fired", "order value", "absent key", "list length", "number vs string", "status", "action count",
        "emitted", "decisions", "stopped"])
def test_the_runner_notices_a_wrong_expectation(change: dict[str, Any], message: str) -> None:
    case = {
        "name": "self-test",
        "rules": 'rule "T" { when "Order is Imported" then "Tag Order"(name: "x") '
                 '"Set Order Metadata"(field: "k", value: "v") }',
        "order": {"id": "1", "order_total": "12.5", "order_items": [{"code": "A"}]},
        "fired": ["T"],
    }
    test_case(case)
    with pytest.raises(AssertionError, match=message):
        test_case({**case, **change})
