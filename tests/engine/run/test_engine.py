"""The Engine against LANGUAGE.md sections 7 and 8: what the YAML cases cannot say.

File order, the ruleset version, the decision's JSON shape, input validation, the loop
guard's chain, dry-run of external actions, thread safety, and that the YAML cases exercise
every registered action.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from pathlib import Path

import pytest

from ruledesk.engine import Decision, Engine, Event, EventError, RulesetError, default_actions

from support import CASES, expected_actions

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
SECTION_8_KEYS = {"event", "order_id", "ruleset", "fired", "actions", "emitted", "order"}
ACTION_KEYS = {"rule", "action", "params", "status", "error"}
STATUSES = {"done", "dry-run", "failed", "scheduled"}


def clock() -> dt.datetime:
    return NOW


def engine_of(text: str, **options) -> Engine:
    return Engine.from_source(text, "case.rules", clock=clock, **options)


def imported(order: dict) -> dict:
    return {"event": "Order is Imported", "order": order}


# ---- rule order across files ------------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _metadata_rule(name: str, priority: int = 0) -> str:
    option = f" priority {priority}" if priority else ""
    return (f'rule "{name}"{option} {{ when "Order is Imported" '
            f'then "Set Order Metadata"(field: "last", value: "{name}") }}\n')


def test_rules_run_by_priority_then_file_path_then_position(tmp_path: Path) -> None:
    b = _write(tmp_path / "b.rules", _metadata_rule("b1") + _metadata_rule("b2") + _metadata_rule("b-high", 5))
    a = _write(tmp_path / "a.rules", _metadata_rule("a1") + _metadata_rule("a-low", -1) + _metadata_rule("a2"))
    # The paths are given in reverse order: the ruleset sorts files by path.
    engine = Engine.from_paths(b, a, clock=clock)
    [decision] = engine.process(imported({"id": "1"}), dry_run=True).decisions
    assert decision.fired == ["b-high", "a1", "a2", "b1", "b2", "a-low"]
    assert decision.order["order_metadata"]["last"] == "a-low"


def test_directories_are_read_recursively_in_sorted_path_order(tmp_path: Path) -> None:
    _write(tmp_path / "rules.d" / "z.rules", _metadata_rule("z"))
    _write(tmp_path / "rules.d" / "m" / "inner.rules", _metadata_rule("m/inner"))
    _write(tmp_path / "rules.d" / "a.rules", _metadata_rule("a"))
    _write(tmp_path / "rules.d" / "notes.txt", "not rules")
    engine = Engine.from_paths(tmp_path / "rules.d", clock=clock)
    [decision] = engine.process(imported({"id": "1"}), dry_run=True).decisions
    assert decision.fired == ["a", "m/inner", "z"]


def test_lets_and_rule_names_share_one_namespace_across_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.rules", 'let threshold = 100\n')
    _write(tmp_path / "b.rules", 'rule "Big" { when "Order is Imported" if order.order_total > threshold '
                                 'then "Tag Order"(name: "big") }\n')
    engine = Engine.from_paths(tmp_path, clock=clock)
    assert engine.process(imported({"id": "1", "order_total": 101})).decisions[0].fired == ["Big"]
    assert engine.process(imported({"id": "1", "order_total": 100})).decisions[0].fired == []


# ---- the ruleset version ----------------------------------------------------------------

RULE = 'rule "Tag" { when "Order is Imported" then "Tag Order"(name: "x") }\n'


def test_decisions_carry_a_content_hash_of_the_rules() -> None:
    first = engine_of(RULE).process(imported({"id": "1"})).decisions
    again = engine_of(RULE).process(imported({"id": "2"})).decisions
    changed = engine_of(RULE.replace('"x"', '"y"')).process(imported({"id": "1"})).decisions
    assert first[0].ruleset.startswith("sha256:") and len(first[0].ruleset) == len("sha256:") + 64
    assert first[0].ruleset == again[0].ruleset
    assert changed[0].ruleset != first[0].ruleset


def test_every_decision_of_a_cascade_names_the_same_ruleset() -> None:
    engine = engine_of('rule "Move" { when "Order is Imported" then "Move to Folder"(folder: "A") }')
    decisions = engine.process(imported({"id": "1"})).decisions
    assert [d.event for d in decisions] == ["Order is Imported", "Folder is Changed"]
    assert {d.ruleset for d in decisions} == {engine.ruleset.version}


def test_the_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.rules", RULE)
    before = Engine.from_paths(tmp_path).ruleset.version
    _write(path, RULE + "# a comment\n")
    assert Engine.from_paths(tmp_path).ruleset.version != before


# ---- decision output (section 8) --------------------------------------------------------

def test_decision_json_has_the_section_8_keys() -> None:
    engine = engine_of('rule "Send" { when "Order is Imported" if order.order_total > 1 '
                       'then "Move to Folder"(folder: "Print {{ order.id }}") }')
    decisions = engine.process({"event": "Order is Imported", "order": {"id": 1001, "order_total": "12.50"}},
                               dry_run=True).decisions
    data = decisions[0].to_json()
    assert SECTION_8_KEYS <= set(data)
    assert data["event"] == "Order is Imported"
    assert data["order_id"] == "1001"
    assert data["ruleset"] == engine.ruleset.version
    assert data["fired"] == ["Send"]
    assert data["emitted"] == ["Folder is Changed"]
    [action] = data["actions"]
    assert ACTION_KEYS <= set(action)
    assert action == {**action, "rule": "Send", "action": "Move to Folder", "params": {"folder": "Print 1001"},
                      "status": "done", "error": None}
    assert data["order"]["folder"] == "Print 1001"
    assert data["order"]["order_total"] == 12.5
    json.dumps([d.to_json() for d in decisions])  # JSON all the way down


def test_decision_json_of_every_yaml_case_is_json() -> None:
    for case_id, case in CASES:
        if "error" in case or "xfail" in case:
            continue
        engine = engine_of(case["rules"], **(case.get("engine") or {}))
        data = {"event": case.get("event", "Order is Imported"), "order": case.get("order") or {},
                "payload": case.get("payload") or {}, "store": case.get("store") or {}}
        for decision in engine.process(data, dry_run=True).decisions:
            if any(a.status == "failed" for a in decision.actions):
                continue  # see test_a_failed_template_action_is_json
            out = decision.to_json()
            assert SECTION_8_KEYS <= set(out), case_id
            assert all(a["status"] in STATUSES and ACTION_KEYS <= set(a) for a in out["actions"]), case_id
            json.dumps(out)


def test_a_failed_template_action_is_json() -> None:
    engine = engine_of('rule "Bad" { when "Order is Imported" '
                       'then "Add Note"(text: "{{ order.update(order) }}") }')
    [decision] = engine.process(imported({"id": "1"})).decisions
    [action] = decision.actions
    assert action.status == "failed" and "unsafe" in action.error
    json.dumps(decision.to_json())


def test_a_bare_order_is_order_is_imported() -> None:
    engine = engine_of('rule "Any" { when "Order is Imported" then "Tag Order"(name: "{{ order.email }}") }')
    [decision] = engine.process({"id": 5, "email": "ann@example.com"}, dry_run=True).decisions
    assert decision.event == "Order is Imported"
    assert decision.order_id == "5"
    assert decision.fired == ["Any"]
    assert decision.order["tag_name"] == "ann@example.com"


def test_an_event_object_is_accepted() -> None:
    engine = engine_of('rule "Moved" { when "Folder is Changed" if event.to_folder == "B" '
                       'then "Tag Order"(name: "b") }')
    event = Event("Folder is Changed", {"id": "1", "folder": "B"}, {"from_folder": "A", "to_folder": "B"})
    [decision] = engine.process(event).decisions
    assert decision.fired == ["Moved"]


def test_input_event_name_is_reported_in_the_catalogue_spelling() -> None:
    [decision] = engine_of(RULE).process({"event": "ORDER IS IMPORTED", "order": {"id": "1"}}).decisions
    assert decision.event == "Order is Imported"
    assert decision.fired == ["Tag"]


def test_dry_run_leaves_the_input_order_alone() -> None:
    order = {"id": "1", "order_items": [{"code": "A", "metadata": {}}], "order_metadata": {}}
    before = copy.deepcopy(order)
    engine = engine_of('rule "Change" { when "Order is Imported" then "Move to Folder"(folder: "X") '
                       '"Set Order Metadata"(field: "k", value: "v") '
                       'for item in order.order_items { "Set Item Metadata"(field: "k", value: "v") } }')
    decisions = engine.process(imported(order), dry_run=True).decisions
    assert decisions[-1].order["folder"] == "X"
    assert order == before


# ---- input errors -----------------------------------------------------------------------

@pytest.mark.parametrize(("data", "names"), [
    ({"event": "Order is Imprted", "order": {}}, ["Order is Imprted", "Order is Imported"]),
    ({"event": "Order is Imported", "order": {"order_total": "abc"}}, ["order_total", "abc"]),
    ({"event": "Order is Imported", "order": {"order_items": [{"quantity": "1.5"}]}},
     ["order_items[0].quantity", "1.5"]),
    ({"event": "Order is Imported", "order": {"date_added": "yesterday"}}, ["date_added", "yesterday"]),
    ({"event": "Folder is Changed", "order": {}, "payload": {"from_folder": "A"}}, ["Folder is Changed", "to_folder"]),
    ({"event": "Order Not Submitted to podOS Because of Invalid SKU", "order": {}, "payload": {"skus": "A"}},
     ["skus"]),
], ids=["unknown event", "bad money", "fractional quantity", "bad date", "payload missing a field",
        "payload of the wrong type"])
def test_bad_input_raises_event_error_naming_the_problem(data: dict, names: list[str]) -> None:
    with pytest.raises(EventError) as info:
        engine_of(RULE).process(data).decisions
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("data", [
    {"event": "Order is Imported", "order": "1001"},
    {"event": 3, "order": {}},
    {"event": "Order is Imported", "order": {}, "store": 5},
    ["not", "an", "object"],
], ids=["order not an object", "event not a string", "store not a name or object", "input not an object"])
def test_a_malformed_event_raises_event_error(data) -> None:
    with pytest.raises(EventError):
        engine_of(RULE).process(data).decisions


# ---- the loop guard ---------------------------------------------------------------------

PING_PONG = '''
rule "A" {
    when "Folder is Changed"
    if event.to_folder == "New"
    then "Move to Folder"(folder: "X") "Set Order Metadata"(field: "a", value: "{{ event.from_folder }}")
}
rule "B" {
    when "Folder is Changed"
    if event.to_folder == "X"
    then "Move to Folder"(folder: "New") "Set Order Metadata"(field: "b", value: "{{ event.from_folder }}")
}
'''
KICK_OFF = {"event": "Folder is Changed", "order": {"id": "1", "folder": "New"},
            "payload": {"from_folder": "X", "to_folder": "New"}}


def test_the_depth_limit_records_the_chain_of_rules_and_events() -> None:
    decisions = engine_of(PING_PONG).process(KICK_OFF, dry_run=True).decisions
    assert len(decisions) == 11
    assert [d.depth for d in decisions] == list(range(11))
    stopped = [d for d in decisions if d.stopped is not None]
    assert stopped == [decisions[-1]]
    stop = decisions[-1].stopped
    assert "depth limit 10" in stop["reason"]
    chain = stop["chain"]
    # Event, rule, event, rule, ...: the incoming event, then each rule and the event it emitted.
    assert chain[0] == "Folder is Changed"
    assert chain[1::2] == ["A", "B"] * 5 + ["A"]
    assert set(chain[0::2]) == {"Folder is Changed"}
    assert len(chain) == 23
    assert decisions[-1].to_json()["stopped"] == stop


def test_the_order_keeps_every_change_before_the_depth_limit() -> None:
    decisions = engine_of(PING_PONG).process(KICK_OFF, dry_run=True).decisions
    final = decisions[-1].order
    assert final["folder"] == "X"
    assert final["order_metadata"] == {"a": "X", "b": "New"}
    assert [d.order["folder"] for d in decisions] == ["X", "New"] * 5 + ["X"]


def test_the_depth_limit_is_configurable() -> None:
    decisions = engine_of(PING_PONG, max_depth=3).process(KICK_OFF).decisions
    assert len(decisions) == 4
    assert "depth limit 3" in decisions[-1].stopped["reason"]
    assert decisions[-1].stopped["chain"] == ["Folder is Changed", "A", "Folder is Changed", "B",
                                              "Folder is Changed", "A", "Folder is Changed", "B",
                                              "Folder is Changed"]


def test_the_firing_limit_records_the_rule_that_did_not_run() -> None:
    decisions = engine_of(PING_PONG, max_firings=5).process(KICK_OFF).decisions
    assert [d.fired for d in decisions] == [["A"], ["B"], ["A"], ["B"], ["A"], []]
    stop = decisions[-1].stopped
    assert "firing limit 5" in stop["reason"] and "'B'" in stop["reason"]
    assert stop["chain"][-1] == "B"
    assert decisions[-1].order["folder"] == "X"


def test_the_default_firing_limit_is_100() -> None:
    text = "".join(_metadata_rule(f"r{i:03}") for i in range(101))
    [decision] = engine_of(text).process(imported({"id": "1"})).decisions
    assert len(decision.fired) == 100
    assert "firing limit 100" in decision.stopped["reason"] and "r100" in decision.stopped["reason"]


# ---- thread safety ------------------------------------------------------------------------

THREAD_RULES = '''
let is_pod_item(item) = item.metadata.podos_variant_id is set
rule "Big" priority 10 {
    when "Order is Imported"
    if sum(i.price * i.quantity for i in order.order_items) > 50
    then "Tag Order"(name: "big {{ order.id }}")
}
rule "Mark" {
    when "Order is Imported"
    then for item in order.order_items where is_pod_item(item) {
        "Set Item Metadata"(field: "order", value: "{{ order.id }}/{{ item.code }}")
    }
}
rule "Route" {
    when "Order is Imported"
    if order.tag_name starts with "big"
    then "Move to Folder"(folder: "Big {{ order.id }}") "Add Note"(text: "{{ order.id }}")
}
rule "Moved" {
    when "Folder is Changed"
    then "Set Order Metadata"(field: "moved", value: "{{ event.to_folder }}")
}
'''


def _thread_order(n: int) -> dict:
    return {"id": str(n), "order_items": [
        {"code": f"A{n}", "price": str(n % 40), "quantity": 1 + n % 3, "metadata": {"podos_variant_id": "v"}},
        {"code": f"B{n}", "price": "10", "quantity": 1},
    ]}


def test_concurrent_processing_gives_the_sequential_decisions() -> None:
    engine = engine_of(THREAD_RULES)
    orders = [_thread_order(n) for n in range(160)]
    sequential = [[d.to_json() for d in engine.process(imported(copy.deepcopy(o)), dry_run=True).decisions] for o in orders]
    assert any(len(s) == 3 for s in sequential) and any(len(s) == 1 for s in sequential)
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for index in range(worker, len(orders), 8):
                results[index] = [d.to_json() for d in engine.process(imported(copy.deepcopy(orders[index])),
                                                                      dry_run=True).decisions]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [results[i] for i in range(len(orders))] == sequential


# ---- explanation levels do not change what happens -------------------------------------------

def _runnable_cases() -> list:
    return [pytest.param(case, id=case_id) for case_id, case in CASES if "error" not in case and "xfail" not in case]


# A first rule that changes a field no case reads, through an action that cannot say which
# fields it touches: every later condition is then evaluated on its own instead of by the
# event's shared matcher.
FORCE_ONE_BY_ONE = ('rule "(force)" priority 1000000 {{ when "{event}" '
                    'then "Set Order Field"(field: "ip_address", value: "0.0.0.0") }}\n')


def _outcome(decisions: list[Decision]) -> list:
    return [(d.event, [name for name in d.fired if name != "(force)"], d.emitted,
             [(a.rule, a.action, a.status) for a in d.actions if a.rule != "(force)"]) for d in decisions]


@pytest.mark.parametrize("case", _runnable_cases())
def test_evaluation_paths_agree(case: dict) -> None:
    """The same decisions whatever the engine records about why (explain off, deciding, full) and
    whether conditions are tested by the shared matcher or rule by rule after a change."""
    event = case.get("event", "Order is Imported")
    data = {"event": event, "order": case.get("order") or {},
            "payload": case.get("payload") or {}, "store": case.get("store") or {}}
    options = case.get("engine") or {}
    forcings = [False] if "max_firings" in options else [False, True]
    seen = {}
    for level in ("off", "deciding", "full"):
        for forced in forcings:
            text = (FORCE_ONE_BY_ONE.format(event=event) if forced else "") + case["rules"]
            engine = engine_of(text, explain=level, **options)
            seen[level, forced] = _outcome(engine.process(copy.deepcopy(data), dry_run=True).decisions)
    first = seen["off", False]
    assert all(outcome == first for outcome in seen.values()), seen


# ---- the YAML cases cover the catalogue ---------------------------------------------------

def test_every_registered_action_is_exercised_by_a_yaml_case() -> None:
    catalogue = default_actions()
    used = set()
    for _, case in CASES:
        if "xfail" in case:
            continue
        for expected in expected_actions(case):
            spec = catalogue.get(expected["action"])
            assert spec is not None, f"unknown action {expected['action']!r} in a case"
            if expected.get("status") != "failed":
                used.add(spec.name)
    missing = sorted(set(catalogue.names()) - used)
    assert not missing, f"no YAML case runs {missing} successfully and checks it"


def test_an_action_that_breaks_fails_itself_not_the_engine():
    from ruledesk.engine import default_actions
    from ruledesk.engine.model.catalogue import ActionSpec, NoParams

    def broken(ctx, params):
        raise KeyError("boom")

    actions = default_actions()
    actions.register(ActionSpec("Broken", NoParams, broken))
    engine = Engine.from_source('rule "b" { when "Order is Imported" then "Broken" "Tag Order"(name: "after") }',
                                "b.rules", actions=actions)
    [decision] = engine.process({"id": 1}).decisions
    assert [(a.action, a.status) for a in decision.actions] == [("Broken", "failed"), ("Tag Order", "done")]
    assert decision.actions[0].error == "Broken failed unexpectedly: KeyError: 'boom'"
    assert decision.order["tag_name"] == "after"


def test_rules_compiled_on_first_use_by_many_threads_keep_their_own_actions():
    # Each rule's act function is compiled on first use, under a shared name: concurrent first
    # uses must not hand one rule another rule's function.
    rules = "\n".join(f'rule "r{i}" {{ when "Order is Imported" if order.email == "{i}@x" '
                      f'then "Tag Order"(name: "t{i}") }}' for i in range(200))
    engine = Engine.from_source(rules, "many.rules")
    wrong: list[tuple] = []

    def worker(start: int) -> None:
        for i in range(start, 200, 8):
            [decision] = engine.process({"id": i, "email": f"{i}@x"}).decisions
            if decision.fired != [f"r{i}"] or decision.order["tag_name"] != f"t{i}":
                wrong.append((i, decision.fired, decision.order["tag_name"]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_no_rule_files_is_an_error_never_an_empty_ruleset(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RulesetError) as error:
        Engine.from_paths(empty)
    assert [d.code for d in error.value.diagnostics] == ["E110"]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.rules").write_text('rule "A" { when "Order is Imported" then "Tag Order"(name: "a") }')
    engine = Engine.from_paths(rules)
    before = engine.ruleset
    (rules / "a.rules").unlink()
    with pytest.raises(RulesetError) as error:
        engine.reload(rules)
    assert [d.code for d in error.value.diagnostics] == ["E110"]
    assert engine.ruleset is before
    with pytest.raises(RulesetError):
        engine.reload()
    assert engine.ruleset is before
