"""The index of an event's rules (compiler.py, ``_index``) is invisible: over random rulesets and
orders, indexed and unindexed matching fire the same rules and explain the others with the same
deciding clauses and values, also when actions change indexed fields during a cascade."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from ruledesk.engine import Engine, default_actions, default_events
from ruledesk.engine.lang.ruleset import build_ruleset
from support import fixed_clock

COUNTRIES = ("US", "FR", "DE", "us", "")
METHODS = ("Ground", "Express", "Priority", "ground")
FOLDERS = ("New", "Review", "Hold")

_text = st.sampled_from


def _quote(value: str) -> str:
    return '"' + value + '"'


_CLAUSES = st.one_of(
    _text(COUNTRIES).map(lambda c: f"order.shipping.country == {_quote(c)}"),
    _text(COUNTRIES).map(lambda c: f"{_quote(c)} == order.shipping.country"),
    _text(COUNTRIES).map(lambda c: f"lower(order.shipping.country) == {_quote(c)}"),
    _text(COUNTRIES).map(lambda c: f"upper(order.shipping.country) == {_quote(c)}"),
    st.lists(_text(METHODS), min_size=1, max_size=3).map(
        lambda ms: f"order.shipping_method in [{', '.join(map(_quote, ms))}]"),
    st.lists(_text(METHODS), min_size=1, max_size=2).map(
        lambda ms: f"order.shipping_method in [{', '.join(map(_quote, ms))}, null]"),
    _text(FOLDERS).map(lambda f: f"order.folder == {_quote(f)}"),
    _text(FOLDERS).map(lambda f: f"order.folder != {_quote(f)}"),
    _text(("Ground", "x")).map(lambda m: f"order.order_metadata.m == {_quote(m)}"),
    st.integers(0, 60).map(lambda n: f"order.order_total >= {n}"),
    _text(COUNTRIES).map(lambda c: f"order.shipping.country not in [{_quote(c)}]"),
    _text(("T", "M")).map(lambda p: f"(any item in order.order_items where item.code starts with {_quote(p)})"),
    st.just("order.email is set"),
    _text(("a@x.com", "b@y.com")).map(lambda e: f"lower(order.email) == {_quote(e)}"),
    _text(("Order is Imported", "Folder is Changed")).map(lambda n: f"event.name == {_quote(n)}"),
)

_ACTIONS = st.one_of(
    st.integers(0, 9).map(lambda n: f'"Tag Order"(name: "t{n}")'),
    _text(FOLDERS).map(lambda f: f'"Move to Folder"(folder: {_quote(f)})'),
    _text(METHODS).map(lambda m: f'"Set Order Field"(field: "shipping_method", value: {_quote(m)})'),
    _text(("Ground", "x")).map(lambda m: f'"Set Order Metadata"(field: "m", value: {_quote(m)})'),
)

_RULES = st.lists(
    st.tuples(_text(("Order is Imported", "Folder is Changed")), st.integers(0, 2),
              st.lists(_CLAUSES, min_size=0, max_size=3), _ACTIONS),
    min_size=1, max_size=24)

_ORDERS = st.fixed_dictionaries({
    "id": st.just("1001"),
    "email": st.sampled_from(("A@x.com", "b@y.com", None)),
    "shipping_method": st.sampled_from(METHODS + (None,)),
    "folder": st.sampled_from(FOLDERS),
    "order_total": st.sampled_from(("10", "49.99", "", None)),
    "shipping": st.fixed_dictionaries({"country": st.sampled_from(COUNTRIES + (None, "FR "))}),
    "order_metadata": st.sampled_from(({}, {"m": "Ground"}, {"m": 3})),
    "order_items": st.lists(st.fixed_dictionaries({"code": st.sampled_from(("T-1", "M-2", None))}), max_size=3),
})


def _source(rules) -> str:
    parts = []
    for number, (event, priority, clauses, action) in enumerate(rules):
        condition = f"\n    if {' and '.join(clauses)}" if clauses else ""
        parts.append(f'rule "r{number}" priority {priority} {{\n    when {_quote(event)}{condition}\n'
                     f"    then {action}\n}}\n")
    return "\n".join(parts)


def _engines(source: str, traced: bool = False) -> tuple[Engine, ...]:
    """(indexed, unindexed) engines of one ruleset; with ``traced``, also a third built for full
    explanations, which evaluates every rule on its own against the order as it is then: the
    reference for the shared match result (and matching again after an action changed a field)."""
    events, actions = default_events(), default_actions()
    made = []
    for index, trace in ((True, False), (False, False)) + (((True, True),) if traced else ()):
        ruleset = build_ruleset({"p.rules": source}, events, actions, index=index, trace=trace)
        made.append(Engine(ruleset, events=events, actions=actions, clock=fixed_clock))
    return tuple(made)


def _outcomes(result) -> list:
    return [[(o.rule.name, o.fired, o.clause, o.values, o.note) for o in d.outcomes] for d in result.decisions]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RULES, st.lists(_ORDERS, min_size=1, max_size=4), st.sampled_from(("Order is Imported", "Folder is Changed")))
def test_indexed_and_unindexed_matching_agree(rules, orders, event_name):
    indexed, plain, traced = _engines(_source(rules), traced=True)
    for order in orders:
        event = {"event": event_name, "order": order, "id": "e1",
                 "payload": {"from_folder": "New", "to_folder": order["folder"]} if event_name != "Order is Imported" else {}}
        assert indexed.match(event) == plain.match(event)
        for explain in ("deciding", "off"):
            got = indexed.process(event, dry_run=True, explain=explain)
            want = plain.process(event, dry_run=True, explain=explain)
            assert [d.to_json(explain=True) for d in got.decisions] == [d.to_json(explain=True) for d in want.decisions]
            assert [d.explain() for d in got.decisions] == [d.explain() for d in want.decisions]
        full = traced.process(event, dry_run=True, explain="full")
        deciding = indexed.process(event, dry_run=True)
        assert [d.to_json() for d in full.decisions] == [d.to_json() for d in deciding.decisions]
        assert _outcomes(full) == _outcomes(deciding)


def test_the_index_is_used_and_skips_rules():
    """The control for the property above: a ruleset with enough equality tests is indexed, and a
    rule the index skips is explained by its indexed clause."""
    rules = [("Order is Imported", 0, [f'order.shipping.country == "{c}"', "order.order_total >= 5"], '"Tag Order"(name: "x")')
             for c in ("US", "FR", "DE", "GB", "NL")]
    indexed, plain = _engines(_source(rules))
    plan = indexed.ruleset.plan("Order is Imported")
    assert plan.index_clauses == (0, 0, 0, 0, 0) and "_g0" in plan.source
    assert plain.ruleset.plan("Order is Imported").index_clauses == (None,) * 5
    fired, missed, _ = plan.match_why(indexed.event({"id": "1", "order_total": "9", "shipping": {"country": "FR"}}).order,
                                      {}, {}, None)
    assert fired == [1] and missed == {}  # only FR's rule was looked at
    result = indexed.process({"id": "1", "order_total": "9", "shipping": {"country": "FR"}}, dry_run=True)
    lines = result.decisions[0].explain()
    assert any("r0" in line for line in lines) and any("'US'" in line or '"US"' in line for line in lines)
