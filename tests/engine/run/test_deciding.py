"""Deciding clauses show the values the rule saw, even when later rules change those fields."""

from __future__ import annotations

from ruledesk.engine import Engine

RULES = '''
rule "Tagged x" priority 10 {
    when "Order is Imported"
    if order.tag_name == "x" and order.email ends with "@example.com"
    then "Add Note"(text: "tagged")
}

rule "Big" priority 5 {
    when "Order is Imported"
    if count(i in order.order_items where i.quantity > 1) >= 2
    then "Add Note"(text: "big")
}

rule "Tag y" priority 1 {
    when "Order is Imported"
    then "Tag Order"(name: "y")
}

rule "Tagged y after" {
    when "Order is Imported"
    if order.tag_name == "z"
    then "Add Note"(text: "z")
}
'''


def test_values_are_those_the_rule_saw_not_those_after_later_rules():
    engine = Engine.from_source(RULES, "d.rules")
    order = {"id": 1, "email": "a@example.com", "order_items": [{"quantity": 3}, {"quantity": 1}]}
    [decision] = engine.process(order, dry_run=True).decisions
    assert decision.fired == ["Tag y"]
    assert decision.order["tag_name"] == "y"
    assert decision.explain() == [
        "  ✗  Tagged x  did not fire",
        '       d.rules:4:8  order.tag_name == "x"  ->  null == "x"  ->  false',
        "  ✗  Big  did not fire",
        "       d.rules:10:8  count(i in order.order_items where i.quantity > 1) >= 2  ->  1 >= 2  ->  false",
        "  ✓  Tag y  fired",
        "  ✗  Tagged y after  did not fire",
        '       d.rules:21:8  order.tag_name == "z"  ->  "y" == "z"  ->  false',
    ]


def test_every_explain_level_gives_the_same_decision():
    engine = Engine.from_source(RULES, "d.rules", explain="full")
    order = {"id": 1, "email": "a@example.com", "tag_name": "x", "order_items": []}
    runs = {level: engine.process(order, dry_run=True, explain=level).decisions for level in ("off", "deciding", "full")}
    jsons = {level: [d.to_json() for d in decisions] for level, decisions in runs.items()}
    assert jsons["off"] == jsons["deciding"] == jsons["full"]
    deciding = [(o.rule.name, o.fired, o.clause, o.values) for o in runs["deciding"][0].outcomes]
    full = [(o.rule.name, o.fired, o.clause, o.values) for o in runs["full"][0].outcomes]
    assert deciding == full
    assert ("Big", False, 0, (0, 2)) in deciding
