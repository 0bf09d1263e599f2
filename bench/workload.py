"""Deterministic synthetic workload for the ruledesk benchmark.

Everything here is seeded: the same ``(n, seed)`` always gives the same orders, events and rules.

* ``make_orders(n, seed)``: Order Desk order JSON (API v2 field names, numbers as strings the way
  Order Desk sends them), with a few missing values so that null handling is exercised.
* ``make_events(n, seed)``: input events (section 8 shape) spread over the ten ``EVENTS``.
* ``make_rules(n, seed)``: ``(ruleset_text, python_rules)``: ``n`` rules of 2-4 clauses, each
  written once in the rule language and once as a hand-written Python lambda over the *runtime*
  order dict (``engine.event(...).order``), dispatched by event name:
  ``{event: [(rule_name, fn), ...]}`` in the engine's evaluation order (all rules have priority 0,
  so that is position order).
* ``check_equivalence(engine, python_rules, events)``: (a) and (b) must return the same names.

The five clause kinds (LANGUAGE.md section 4):

==========  =====================================================  =========================================
kind        rule language                                          lambda (null-safe like the language)
==========  =====================================================  =========================================
country     ``order.shipping.country == "US"``                     ``o["shipping"]["country"] == "US"``
method      ``order.shipping_method in ["A", "B"]``                ``o["shipping_method"] in ("A", "B")``
total       ``order.order_total > 49.99``                          ``o["order_total"] is not None and ...``
email       ``order.email ends with "@gmail.com"``                 ``o["email"] is not None and ....endswith``
item        ``any item in order.order_items where                  ``any(i["code"] is not None and ... for i
            item.code starts with "TEE-" and item.quantity > 2``   in o["order_items"])``
==========  =====================================================  =========================================
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

EVENTS: tuple[str, ...] = (
    "Order is Imported",
    "Order is Created Manually",
    "Folder is Changed",
    "Order Details Changed",
    "Order Address Changed",
    "Item Changed",
    "Note Added",
    "Order is Duplicated",
    "Order is Split",
    "Order Confirmed",
)
# Imports dominate a real order stream; the other events are rarer but all present.
EVENT_WEIGHTS: tuple[int, ...] = (30, 4, 14, 8, 6, 8, 10, 4, 4, 12)

COUNTRIES: tuple[str, ...] = ("US", "CA", "GB", "AU", "DE", "FR", "NL", "JP")
COUNTRY_WEIGHTS: tuple[int, ...] = (45, 12, 12, 7, 8, 7, 5, 4)
SHIPPING_METHODS: tuple[str, ...] = (
    "USPS First Class", "USPS Priority Mail", "UPS Ground", "FedEx 2Day", "DHL Express", "Standard International",
)
EMAIL_DOMAINS: tuple[str, ...] = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "example.com",
                                  "hotmail.co.uk")
CODE_PREFIXES: tuple[str, ...] = ("TEE-", "HOOD-", "MUG-", "POSTER-", "CASE-", "STK-")
FOLDERS: tuple[str, ...] = ("New", "Prepared", "Awaiting Artwork", "Needs Review", "Submitted", "Shipped")
TOTAL_THRESHOLDS: tuple[str, ...] = ("10", "25", "49.99", "75.50", "100", "150", "250")
FIRST_NAMES = ("Jane", "John", "Ana", "Lukas", "Mei", "Omar", "Priya", "Sam", "Noor", "Eli")
LAST_NAMES = ("Doe", "Smith", "Garcia", "Müller", "Chen", "Haddad", "Patel", "Jones", "Khan", "Levi")
DESIGNS = ("SUNRISE", "WAVE", "FOREST", "CITY", "CAT", "ROCKET", "BLOOM", "PIXEL")
SIZES = ("S", "M", "L", "XL")
COLORS = ("Black", "White", "Navy", "Heather")

STORE = "Main Store"
PythonRules = dict[str, list[tuple[str, Callable[[dict[str, Any]], bool]]]]


# ---- orders and events -------------------------------------------------------------------------


def _money(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.2f}"


def _address(rng: random.Random, first: str, last: str, country: str) -> dict[str, Any]:
    return {
        "first_name": first, "last_name": last, "company": None,
        "address1": f"{rng.randint(1, 999)} {rng.choice(('Main St', 'Bedford Ave', 'High St', 'Parkweg'))}",
        "address2": "", "city": rng.choice(("Springfield", "Brooklyn", "Leeds", "Utrecht", "Lyon", "Osaka")),
        "state": rng.choice(("NY", "CA", "ON", "NSW", "", "")), "postal_code": f"{rng.randint(10000, 99999)}",
        "country": country, "phone": f"555-{rng.randint(1000, 9999)}",
    }


def _item(rng: random.Random, order_id: int, index: int) -> dict[str, Any]:
    prefix = rng.choice(CODE_PREFIXES)
    design = rng.choice(DESIGNS)
    item: dict[str, Any] = {
        "id": f"{order_id}{index:02d}",
        "name": f"{design.title()} {prefix.rstrip('-').title()}",
        "price": _money(rng, 4, 60),
        "quantity": str(rng.choices((1, 2, 3, 4, 5, 6), (40, 25, 14, 10, 6, 5))[0]),
        "weight": f"{rng.uniform(0.05, 2.0):.2f}",
        "code": f"{prefix}{design}-{rng.choice(SIZES)}-{rng.choice(COLORS).upper()}",
        "delivery_type": "ship",
        "category_code": prefix.rstrip("-").lower(),
        "variation_list": {"Size": rng.choice(SIZES), "Color": rng.choice(COLORS)},
        "metadata": {"podos_gfn_product_id": f"gfn-{rng.randint(1000, 9999)}"} if rng.random() < 0.5 else [],
        "date_added": "2026-11-21 14:03:11",
        "date_updated": "2026-11-21 14:03:11",
    }
    if rng.random() < 0.03:  # custom line items without a SKU or quantity exist in real stores
        item["code"] = None
    if rng.random() < 0.02:
        item["quantity"] = None
    return item


def make_orders(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` Order Desk orders (raw JSON shape: numbers as strings, empty maps as ``[]``)."""
    rng = random.Random(seed)
    orders = []
    for k in range(n):
        order_id = 100000 + k
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        items = [_item(rng, order_id, i) for i in range(rng.randint(1, 5))]
        product_total = sum(Decimal(i["price"]) * int(i["quantity"] or 1) for i in items)
        shipping_total = Decimal(_money(rng, 0, 25))
        order: dict[str, Any] = {
            "id": str(order_id),
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}",
            "shipping_method": rng.choice(SHIPPING_METHODS),
            "quantity_total": str(sum(int(i["quantity"] or 1) for i in items)),
            "product_total": f"{product_total:.2f}",
            "shipping_total": f"{shipping_total:.2f}",
            "handling_total": "0.00",
            "tax_total": "0.00",
            "discount_total": "0.00",
            "order_total": f"{product_total + shipping_total:.2f}",
            "payment_type": "Credit Card",
            "payment_status": "Approved",
            "customer_id": None,
            "email_count": "0",
            "ip_address": f"203.0.113.{rng.randint(1, 254)}",
            "tag_color": "",
            "tag_name": "",
            "source_id": f"#{order_id}",
            "source_name": rng.choice(("Shopify", "WooCommerce", "Etsy", "Manual")),
            "folder_id": None,
            "folder": rng.choice(FOLDERS),
            "date_added": "2026-11-21 14:03:11",
            "date_updated": "2026-11-21 14:03:11",
            "shipping": _address(rng, first, last, country),
            "customer": _address(rng, first, last, country),
            "checkout_data": [],
            "order_metadata": [],
            "discount_list": [],
            "order_notes": [],
            "order_items": items,
        }
        # A few orders with missing values: the language compares null as false, never raises.
        if rng.random() < 0.03:
            order["email"] = None
        if rng.random() < 0.03:
            order["order_total"] = ""
        if rng.random() < 0.02:
            order["shipping_method"] = None
        if rng.random() < 0.02:
            order["shipping"]["country"] = None
        orders.append(order)
    return orders


def _payload(rng: random.Random, event: str, order: dict[str, Any]) -> dict[str, Any]:
    if event == "Folder is Changed":
        return {"from_folder": rng.choice(FOLDERS), "to_folder": order["folder"]}
    if event == "Note Added":
        return {"note": rng.choice(("Customer called", "Gift wrap please", "Address confirmed"))}
    if event == "Item Changed":
        return {"item_id": order["order_items"][0]["id"]}
    if event in ("Order is Duplicated", "Order is Split"):
        return {"source_order_id": str(int(order["id"]) - 1)}
    return {}


def make_events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` input events ``{"event", "order", "payload", "store"}`` over the ten ``EVENTS``."""
    rng = random.Random(seed * 7919 + 1)
    events = []
    for order in make_orders(n, seed):
        name = rng.choices(EVENTS, EVENT_WEIGHTS)[0]
        events.append({"event": name, "order": order, "payload": _payload(rng, name, order), "store": STORE})
    return events


# ---- rules -------------------------------------------------------------------------------------

CLAUSE_KINDS: tuple[str, ...] = ("country", "method", "total", "email", "item")


class _Consts:
    """Named constants of the lambda source (Decimal thresholds), like module constants in real code."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._names: dict[Any, str] = {}

    def name(self, value: Any) -> str:
        key = (type(value), value)
        if key not in self._names:
            self._names[key] = f"D{len(self._names)}"
            self.values[self._names[key]] = value
        return self._names[key]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clause(rng: random.Random, kind: str, consts: _Consts) -> tuple[str, str]:
    """One clause: (rule-language text, Python expression over ``o``)."""
    if kind == "country":
        country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        return (f"order.shipping.country == {_quote(country)}",
                f'o["shipping"]["country"] == {country!r}')
    if kind == "method":
        methods = rng.sample(SHIPPING_METHODS, rng.randint(1, 3))
        return (f"order.shipping_method in [{', '.join(_quote(m) for m in methods)}]",
                f'o["shipping_method"] in ({", ".join(repr(m) for m in methods)},)')
    if kind == "total":
        op = rng.choice(("<", "<=", ">", ">="))
        threshold = rng.choice(TOTAL_THRESHOLDS)
        value = Decimal(threshold) if "." in threshold else int(threshold)
        py_value = consts.name(value) if isinstance(value, Decimal) else threshold
        return (f"order.order_total {op} {threshold}",
                f'(o["order_total"] is not None and o["order_total"] {op} {py_value})')
    if kind == "email":
        domain = "@" + rng.choice(EMAIL_DOMAINS)
        return (f"order.email ends with {_quote(domain)}",
                f'(o["email"] is not None and o["email"].endswith({domain!r}))')
    if kind == "item":
        prefix = rng.choice(CODE_PREFIXES)
        quantity = rng.randint(0, 3)
        # Parenthesised: a `where` body reaches as far right as it can (LANGUAGE.md section 9.2).
        return (f"(any item in order.order_items where item.code starts with {_quote(prefix)} "
                f"and item.quantity > {quantity})",
                f'any(i["code"] is not None and i["code"].startswith({prefix!r}) '
                f'and i["quantity"] is not None and i["quantity"] > {quantity} for i in o["order_items"])')
    raise ValueError(kind)


def make_rule_specs(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """The rules as data: name, events, clauses (language text and Python source), action."""
    rng = random.Random(seed * 104729 + n)
    consts = _Consts()
    specs = []
    for k in range(n):
        events = [rng.choice(EVENTS)]
        if rng.random() < 0.2:  # some rules listen to two events
            other = rng.choice(EVENTS)
            if other != events[0]:
                events.append(other)
        kinds = rng.sample(CLAUSE_KINDS, rng.randint(2, 4))
        clauses = [_clause(rng, kind, consts) for kind in kinds]
        if k % 2:
            action = f'"Tag Order"(name: "t{k}")'
        else:
            action = f'"Set Order Metadata"(field: "r{k}", value: "x")'
        specs.append({"name": f"r{k:05d}", "events": events, "kinds": kinds, "clauses": clauses,
                      "action": action})
    specs_consts = consts.values
    for spec in specs:
        spec["consts"] = specs_consts
    return specs


def rules_text(specs: Iterable[dict[str, Any]]) -> str:
    parts = ["# generated by bench/workload.py; priority 0 everywhere, so rules run in position order\n"]
    for spec in specs:
        when = ", ".join(_quote(e) for e in spec["events"])
        cond = "\n       and ".join(text for text, _ in spec["clauses"])
        parts.append(f'rule "{spec["name"]}" {{\n    when {when}\n    if {cond}\n    then {spec["action"]}\n}}\n')
    return "\n".join(parts)


def python_source(spec: dict[str, Any]) -> str:
    """The hand-written lambda of one rule, as Python source."""
    return "lambda o: " + " and ".join(code for _, code in spec["clauses"])


def python_rules(specs: Iterable[dict[str, Any]]) -> PythonRules:
    """``{event: [(name, fn), ...]}`` in evaluation order (priority 0 everywhere: position order)."""
    table: PythonRules = {}
    namespace: dict[str, Any] = {"__builtins__": {"any": any}}
    for spec in specs:
        namespace.update(spec["consts"])
        fn = eval(compile(python_source(spec), f"<rule {spec['name']}>", "eval"), namespace)  # noqa: S307
        for event in spec["events"]:
            table.setdefault(event, []).append((spec["name"], fn))
    return table


def make_rules(n: int, seed: int = 1) -> tuple[str, PythonRules]:
    """``n`` rules as (ruleset text, ``{event: [(name, fn), ...]}``)."""
    specs = make_rule_specs(n, seed)
    return rules_text(specs), python_rules(specs)


# ---- (b): the lambdas dispatched by event ------------------------------------------------------


def make_dispatch(table: PythonRules) -> Callable[[Any], list[str]]:
    """``dispatch(event) -> [names]``: the lambda counterpart of ``engine.match(event, validated=True)``."""
    get = table.get

    def dispatch(event: Any) -> list[str]:
        order = event.order
        return [name for name, fn in get(event.name, ()) if fn(order)]

    return dispatch


class EquivalenceError(AssertionError):
    """ruledesk and the hand-written lambdas disagree: the benchmark would compare different work."""


def check_equivalence(engine: Any, table: PythonRules, events: list[Any], sample: int = 500) -> dict[str, Any]:
    """(a) and (b) must return identical name lists for ``sample`` validated events; raises otherwise.

    Returns statistics on the sample (how many rules matched) so a run can show the workload is not
    trivially all-false.
    """
    dispatch = make_dispatch(table)
    step = max(1, len(events) // sample) if events else 1
    checked = matched = events_with_hits = 0
    mismatches = []
    for event in events[::step][:sample]:
        got = engine.match(event, validated=True)
        want = dispatch(event)
        checked += 1
        matched += len(got)
        events_with_hits += bool(got)
        if got != want:
            mismatches.append((event.name, event.order.get("id"), got, want))
    if mismatches:
        lines = [f"  {name!r} order {oid}: ruledesk {got} != lambdas {want}" for name, oid, got, want in mismatches[:5]]
        raise EquivalenceError(f"{len(mismatches)} of {checked} events differ between ruledesk and the lambdas:\n"
                               + "\n".join(lines))
    return {"events": checked, "matches": matched, "events_with_matches": events_with_hits,
            "matches_per_event": matched / checked if checked else 0.0}


# ---- (p): a plain generated function per event ------------------------------------------------

_HOISTED = (('o["shipping"]["country"]', "country"), ('o["shipping_method"]', "method"),
            ('o["order_total"]', "total"), ('o["email"]', "email"), ('o["order_items"]', "items"))


def plain_source(specs: Iterable[dict[str, Any]]) -> str:
    """One generated function per event, written the obvious way: every field the rules read is read
    once into a local at the top, then every rule's condition is inlined (clauses as written, ``and``
    short-circuiting) as ``if ...: out.append(name)``.  No indexing, no reordering."""
    by_event: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        for event in spec["events"]:
            by_event.setdefault(event, []).append(spec)
    lines: list[str] = []
    for number, (event, rules) in enumerate(by_event.items()):
        lines.append(f"def match_{number}(o):  # {event}")
        lines += [f"    {local} = {read}" for read, local in _HOISTED]
        lines.append("    out = []")
        for spec in rules:
            cond = " and ".join(code for _, code in spec["clauses"])
            for read, local in _HOISTED:
                cond = cond.replace(read, local)
            lines.append(f"    if {cond}: out.append({spec['name']!r})")
        lines.append("    return out")
        lines.append(f"PLAIN[{event!r}] = match_{number}")
    return "\n".join(lines) + "\n"


def make_plain(specs: list[dict[str, Any]]) -> Callable[[Any], list[str]]:
    """``plain(event) -> [names]``: the plain generated counterpart of ``engine.match(event, validated=True)``."""
    namespace: dict[str, Any] = {"__builtins__": {"any": any}, "PLAIN": {}}
    for spec in specs:
        namespace.update(spec["consts"])
    exec(compile(plain_source(specs), "<plain>", "exec"), namespace)  # noqa: S102
    table = namespace["PLAIN"]
    empty = lambda o: []  # noqa: E731

    def plain(event: Any) -> list[str]:
        return table.get(event.name, empty)(event.order)

    return plain
