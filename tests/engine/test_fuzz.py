"""Fuzzing the whole path with hypothesis: random rule files (token soup and grammar-shaped text)
and random orders full of hostile values.  Building only ever raises ``RulesetError``, processing
only ``EventError``, and every example finishes within its deadline."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ruledesk.engine import Engine, EventError, RulesetError, default_actions, default_events
from ruledesk.engine.lang.ruleset import build_ruleset
from support import fixed_clock

EVENTS, ACTIONS = default_events(), default_actions()
FUZZ = settings(max_examples=150, deadline=dt.timedelta(seconds=2), database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- rule text ---------------------------------------------------------------------------------------

TOKENS = ['rule', '"r"', '"Order is Imported"', 'when', 'if', 'then', '{', '}', '(', ')', '[', ']', ',', ':',
          'let', 'x', '=', '==', '!=', '<', '>=', 'and', 'or', 'not', 'any', 'all', 'count', 'sum', 'in', 'where',
          'for', 'is', 'set', 'empty', 'matches', '"(a+)+$"', 'contains', 'starts', 'with', '+', '-', '*', '/', '%',
          'order', '.', 'order_total', 'email', 'order_items', 'item', 'true', 'null', '1', '1.5', '2d', '1.5h',
          '1' + '0' * 200, '"\\ud800"', '"\\u0000"', '"{{ order.id }}"', '"{% if %}"', '"Tag Order"', 'name',
          'priority', 'disabled', 'every', 'button', 'folder', '#', '\n', '"', '\\', 'lower', 'round', 'date',
          'now', '"Move to Folder"', 'é', '\x00', '9' * 30 + 'w']


@st.composite
def token_soup(draw) -> str:
    return " ".join(draw(st.lists(st.sampled_from(TOKENS), max_size=60)))


HOSTILE_TEXT = st.sampled_from(["", "a", "(a+)+$", "\\ud800", "é", "x" * 500, "{{ order.id }}", "%s", "\\\\",
                                "2026-01-01", "1e999999999", "NaN"])
TEXT_LITERAL = HOSTILE_TEXT.map(lambda text: '"' + text + '"')

# Well-typed expressions (most build, so the orders run through them) with a few ill-typed ones.
NUMBER = st.recursive(
    st.sampled_from(["order.order_total", "order.email_count", "order.order_metadata.n", "order.weight_total",
                     "0", "1", "12.50", "1" + "0" * 99, "0." + "0" * 90 + "1", "len(order.email)",
                     "count(order.order_items)"]),
    lambda n: st.one_of(
        st.tuples(n, st.sampled_from(["+", "-", "*", "/", "%"]), n).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(n, n).map(lambda t: f"round({t[0]}, {t[1]})"),
        n.map(lambda x: f"-({x})"),
        n.map(lambda x: f"sum(i.price * ({x}) for i in order.order_items)"),
    ), max_leaves=6)
TEXT = st.recursive(
    st.one_of(st.sampled_from(["order.email", "order.shipping.country", "order.order_metadata.s",
                               "order.checkout_data.k", "event.name", "store.settings.x",
                               "(order.order_metadata.s * order.order_metadata.n)",
                               "(order.order_metadata.s % order.order_metadata.n)"]), TEXT_LITERAL),
    lambda t: st.one_of(
        st.tuples(t, t).map(lambda p: f"({p[0]} + {p[1]})"),
        t.map(lambda x: f"lower({x})"),
    ), max_leaves=4)
CONDITION = st.recursive(
    st.one_of(
        st.tuples(NUMBER, st.sampled_from(["==", "!=", "<", ">="]), NUMBER).map(" ".join),
        st.tuples(TEXT, st.sampled_from(["==", "contains", "starts with", "ends with"]), TEXT).map(" ".join),
        st.tuples(TEXT, HOSTILE_TEXT).map(lambda t: f'{t[0]} matches "{t[1]}"'),
        st.tuples(NUMBER, st.sampled_from(["is set", "is not set"])).map(" ".join),
        st.tuples(TEXT, st.sampled_from(["is set", "is empty", "is not empty"])).map(" ".join),
        st.tuples(TEXT, TEXT).map(lambda t: f'date({t[0]}) < now() - 2d or {t[1]} in ["US", "CA"]'),
        st.tuples(NUMBER, TEXT).map(lambda t: f"{t[0]} == {t[1]}"),  # a type error: refused
    ),
    lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["and", "or"]), c).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        c.map(lambda x: f"not ({x})"),
        st.tuples(NUMBER, c).map(lambda t: f"any i in order.order_items where i.quantity * ({t[0]}) > 1 or ({t[1]})"),
        c.map(lambda x: f"count(i in order.order_items where ({x})) > 1"),
    ), max_leaves=4)
EXPRESSIONS = st.one_of(NUMBER, TEXT, CONDITION)


@st.composite
def shaped_rules(draw) -> str:
    lets = draw(st.lists(EXPRESSIONS, max_size=3))
    text = "".join(f"let v{i} = {body}\n" for i, body in enumerate(lets))
    for index in range(draw(st.integers(1, 3))):
        text += (f'rule "r{index}" priority {draw(st.sampled_from(["0", "-5", "100"]))} {{\n'
                 f'    when "Order is Imported", "Order Details Changed"\n    if {draw(CONDITION)}\n    then\n'
                 f'        "Set Order Metadata"(field: "f", value: {draw(st.one_of(NUMBER, TEXT))})\n'
                 f'        for item in order.order_items where {draw(CONDITION)} {{ "Set Item Metadata"(field: "g", value: "h") }}\n'
                 f'        "Add Note"(text: "{{{{ order.id }}}} {draw(HOSTILE_TEXT)}")\n}}\n')
    return text


# ---- orders --------------------------------------------------------------------------------------

HOSTILE_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([5000, -1000, 63, 19]).map(lambda e: 10 ** e if e > 0 else -(10 ** -e)),
    st.floats(allow_nan=True, allow_infinity=True), st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("1e999999999"), Decimal("1e-999999999"), Decimal("9" * 150), Decimal("sNaN")]),
    st.text(max_size=30), HOSTILE_TEXT, st.sampled_from(["\ud800", "1e400", "0000-00-00 00:00:00", "9999-12-31T23:59:59-05:00"]),
)
JSON = st.recursive(HOSTILE_SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=20)
FIELDS = ["id", "email", "order_total", "email_count", "date_added", "folder", "shipping", "order_metadata",
          "checkout_data", "order_items", "order_notes", "tag_name", "weight_total", "extra"]


def _deep(depth: int) -> list:
    root = current = []
    for _ in range(depth):
        current.append([])
        current = current[0]
    return root


PLAUSIBLE_NUMBER = st.one_of(st.integers(-10 ** 6, 10 ** 6), st.decimals(-10 ** 6, 10 ** 6, places=2),
                             st.sampled_from(["12.50", "1e1000", "1e-1000", "9" * 100, ""]))
PLAUSIBLE = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=8), "email": st.text(max_size=20), "order_total": PLAUSIBLE_NUMBER,
    "email_count": st.integers(0, 10 ** 17), "weight_total": PLAUSIBLE_NUMBER,
    "shipping": st.fixed_dictionaries({}, optional={"country": st.sampled_from(["US", "CA", "é"])}),
    "order_metadata": st.dictionaries(st.sampled_from(["n", "s", "d", "x"]), JSON, max_size=4),
    "checkout_data": st.dictionaries(st.sampled_from(["k"]), st.text(max_size=10), max_size=1),
    "date_added": st.sampled_from(["2026-01-01 00:00:00", "0000-00-00 00:00:00", "", "2026-11-23T12:00:00+05:00"]),
    "order_items": st.lists(st.fixed_dictionaries({}, optional={
        "code": st.text(max_size=6), "price": PLAUSIBLE_NUMBER, "quantity": st.integers(0, 10 ** 6),
        "metadata": st.dictionaries(st.text(max_size=4), JSON, max_size=2)}), max_size=4),
})


@st.composite
def hostile_orders(draw) -> dict:
    if draw(st.integers(0, 2)):
        return draw(PLAUSIBLE)
    order = draw(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8))
    if draw(st.booleans()):
        order["order_items"] = draw(st.lists(st.dictionaries(
            st.sampled_from(["code", "price", "quantity", "metadata", "variation_list", "date_added"]), JSON, max_size=5),
            max_size=4))
    if draw(st.integers(0, 9)) == 0:
        order["order_metadata"] = {"deep": _deep(draw(st.sampled_from([99, 101, 5000])))}
    return order


RULES = """
let big(x) = x.order_total * x.order_total > 1000
rule "a" { when "Order is Imported" if big(order) or order.order_metadata.n * 2 > 1 or "ab" * order.order_metadata.n == "x"
           then "Set Order Metadata"(field: "m", value: order.order_metadata.n % 7) }
rule "b" { when "Order is Imported" if any i in order.order_items where i.price * i.quantity > 0 and i.code matches "(a+)+$"
           then for item in order.order_items { "Set Item Metadata"(field: "s", value: item.price / item.quantity) } }
rule "c" { when "Order is Imported" if round(order.order_total, order.email_count) == order.order_total
           or date(order.order_metadata.d) < now() - 2d or lower(order.email) contains "é"
           then "Add Note"(text: "{{ order.id }} {{ order.order_metadata }}") "Tag Order"(name: "t") }
"""
ENGINE = Engine.from_source(RULES, "fuzz.rules", clock=fixed_clock)


def _build(text: str) -> None:
    try:
        build_ruleset({"fuzz.rules": text}, EVENTS, ACTIONS)
    except RulesetError:
        pass


@FUZZ
@given(token_soup())
def test_token_soup_only_ever_raises_ruleset_error(text):
    _build(text)


@FUZZ
@given(shaped_rules(), hostile_orders())
def test_grammar_shaped_rules_build_or_fail_cleanly_and_run_any_order(text, order):
    try:
        engine = Engine(build_ruleset({"fuzz.rules": text}, EVENTS, ACTIONS), events=EVENTS, actions=ACTIONS,
                        clock=fixed_clock)
    except RulesetError:
        event("rules refused")
        return
    event("rules built")
    _process(engine, order)


@FUZZ
@given(hostile_orders())
def test_hostile_orders_only_ever_raise_event_error(order):
    _process(ENGINE, order)


def _process(engine: Engine, order: dict) -> None:
    try:
        for decision in engine.process({"event": "Order is Imported", "order": order}, dry_run=True, explain="deciding").decisions:
            decision.to_json(explain=True)
        event("order processed")
    except EventError:
        event("order refused")
