"""Split Order: one order per distinct value of an item field, the money divided exactly (largest remainder)."""

from __future__ import annotations

import copy
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pydantic import Field

from ruledesk.engine.lang.templates import is_template
from ruledesk.engine.model.catalogue import action
from ruledesk.engine.model.context import ActionContext, ActionError
from ruledesk.engine.model.order import MAX_DIGITS, Order, OrderError, bounded_value, to_json
from ruledesk.grammar.diagnostics import closest, did_you_mean

from ruledesk.actions.order import ActionParams

# What an order can be split by: an item field, or a key of the item's variation_list or metadata.
ITEM_FIELDS = ("code", "name", "category_code", "delivery_type")
KEYED = {"variation": "variation_list", "metadata": "metadata"}
FORMS = 'code, name, category_code, delivery_type, "variation NAME" or "metadata KEY"'
_ALIASES = {"sku": "code"}  # what Order Desk's screens call an item field

# Where the split is recorded in order_metadata: on the original, how many orders have been split
# off it (the next piece's number follows it); on each piece, the id of the order it came from.
SPLIT_COUNT = "split_count"
SPLIT_FROM = "split_from"

# Every numeric total of the order model (money, and the quantity and weight totals) and how it is
# divided: (what each item weighs for it, the fewest decimal places of a piece's share).
DECIMAL_FIELDS = tuple(name for name, info in Order.model_fields.items() if info.annotation == (Decimal | None))
_QUANTITY, _WEIGHT, _VALUE = "quantity", "weight", "value"
_DIVISION = {name: ((_QUANTITY, 0) if name == "quantity_total" else (_WEIGHT, 2) if name == "weight_total"
                    else (_VALUE, 2)) for name in DECIMAL_FIELDS}
# What a new order does not inherit (its items are its group's, set apart).
_NOT_INHERITED = {"order_notes": [], "order_shipments": [], "discount_list": [], "order_items": []}


class SplitError(ValueError):
    """An order cannot be split as asked; ``suggestion`` is what the author probably meant, if anything."""

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion

    def describe(self) -> str:
        hint = did_you_mean([self.suggestion]) if self.suggestion else None
        return f"{self}" + (f" ({hint})" if hint else "")


# --- what to split by ---------------------------------------------------------------------


@dataclass(frozen=True)
class SplitBy:
    """A parsed ``by``: an item field (``key`` None), or ``variation``/``metadata`` and its key."""

    kind: str
    key: str | None = None

    def value_of(self, item: dict[str, Any]) -> Any:
        if self.key is None:
            return item.get(self.kind)
        mapping = item.get(KEYED[self.kind])
        return mapping.get(self.key) if isinstance(mapping, dict) else None

    def __str__(self) -> str:
        return self.kind if self.key is None else f"{self.kind} {self.key}"


def parse_by(text: str) -> SplitBy:
    """``code``, ``name``, ``category_code``, ``delivery_type``, ``variation NAME`` or ``metadata KEY``.

    The first word is case-insensitive; NAME and KEY are the rest, exactly as written (map keys are
    case-sensitive) and may contain spaces.  ``SplitError`` with a suggestion if it is none of these."""
    words = text.strip().split(None, 1)
    if not words:
        raise SplitError(f"nothing to split by: write {FORMS}")
    head, rest = words[0].casefold(), (words[1].strip() if len(words) > 1 else "")
    if head in ITEM_FIELDS:
        if rest:
            raise SplitError(f'cannot split by "{text.strip()}": {head} takes no name after it', head)
        return SplitBy(head)
    if head in KEYED:
        if not rest:
            raise SplitError(f'"{head}" needs the {"name of the variation" if head == "variation" else "metadata key"}'
                             f' after it, e.g. "{head} {"Size" if head == "variation" else "vendor"}"')
        return SplitBy(head, rest)
    near = _ALIASES.get(head) or next(iter(closest(head, [*ITEM_FIELDS, *KEYED])), None)
    suggestion = near if near in ITEM_FIELDS else (f"{near} {rest}" if near and rest else None)
    raise SplitError(f'cannot split by "{text.strip()}": write {FORMS}', suggestion)


def check_by(literals: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """The static check of a literal ``by`` (a template is rendered, and checked, at run time)."""
    text = literals.get("by")
    if isinstance(text, (int, Decimal)) and not isinstance(text, bool):
        text = str(text)  # a number is taken as its text, as at run time
    if not isinstance(text, str) or is_template(text) or not text:
        return []  # not a string, or empty: the parameter model's own check reports it
    try:
        parse_by(text)
    except SplitError as exc:
        return [("by", str(exc), exc.suggestion)]
    return []


# --- grouping -----------------------------------------------------------------------------

_NO_VALUE = ("none",)


def _group_key(value: Any) -> tuple[Any, ...]:
    """Values are compared exactly, by kind (the text "1", the number 1 and true are three values);
    a missing value, null and the empty text are one value: none."""
    if value is None or value == "":
        return _NO_VALUE
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, Decimal)):
        return ("number", value)
    if isinstance(value, str):
        return ("text", value)
    return ("json", to_json(value))  # a list or map from metadata


def group_items(items: Sequence[dict[str, Any]], by: SplitBy) -> list[list[dict[str, Any]]]:
    """The items grouped by their value of ``by``, groups in order of their value's first appearance
    (the items without a value are one group, placed like any other)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(_group_key(by.value_of(item)), []).append(item)
    return list(groups.values())


# --- dividing money -----------------------------------------------------------------------


def _exponent(number: Decimal) -> int:
    """The exponent of ``number`` without trailing zeros (10.500 -> -1, 100 -> 2, 0 -> 0)."""
    _, digits, exponent = number.as_tuple()
    trailing = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing += 1
    return 0 if trailing == len(digits) else int(exponent) + trailing


def allocate(total: Decimal, weights: Sequence[Decimal | Fraction | int], places: int = 2) -> list[Decimal]:
    """``total`` divided in proportion to ``weights`` by largest remainder: the pieces always sum to
    ``total`` exactly, and each is less than one unit from its exact share.

    The unit is 10**-``places``, or the total's own smallest unit when it has more decimals (10.005
    is divided in thousandths); only when cents would need more than the order model's MAX_DIGITS
    significant digits is it coarser.  Weights may be negative; equal remainders go to the earlier
    piece.  When the weights sum to zero there is nothing to be proportional to: the first piece gets
    everything.  ValueError without weights."""
    if not weights:
        raise ValueError("allocate needs at least one weight")
    exponent = _exponent(total)
    places = max(places, -exponent)
    if total:
        places = min(places, max(-exponent, MAX_DIGITS - 1 - total.adjusted()))
    units = Fraction(total) * Fraction(10) ** places
    assert units.denominator == 1, "the unit divides the total"
    exact = [Fraction(weight) for weight in weights]
    whole = sum(exact)
    if whole == 0:
        pieces = [units.numerator] + [0] * (len(exact) - 1)
    else:
        shares = [units * weight / whole for weight in exact]
        pieces = [math.floor(share) for share in shares]
        left = units.numerator - sum(pieces)  # 0 <= left < len(pieces): the remainders sum to it
        by_remainder = sorted(range(len(shares)), key=lambda i: shares[i] - pieces[i], reverse=True)  # stable
        for index in by_remainder[:left]:
            pieces[index] += 1
    return [Decimal(f"{piece}E{-places}") for piece in pieces]


def _weighs(items: Sequence[dict[str, Any]], kind: str) -> Fraction:
    """What a group of items weighs when a total is divided: its quantity, its weight (weight x
    quantity) or its value (price x quantity); a missing number counts as zero."""
    total = Fraction(0)
    for item in items:
        quantity = item.get("quantity") or 0
        if kind == _QUANTITY:
            total += quantity
        else:
            number = item.get("weight" if kind == _WEIGHT else "price") or 0
            total += Fraction(number) * quantity
    return total


# --- splitting ----------------------------------------------------------------------------


def _split_count(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and value >= 0 and value == int(value):
        return int(value)
    raise SplitError(f"order_metadata.{SPLIT_COUNT} is {value!r}, not the number of orders split off this one, "
                     "so the new orders cannot be numbered")


def split_order(order: dict[str, Any], by: SplitBy | str, now: _dt.datetime) -> list[dict[str, Any]]:
    """The orders ``order`` splits into by ``by``: the original first (keeping the first group of
    items), then one new order per further group; ``[order]`` itself when there is one group.

    Never changes ``order`` (the first dict is a new one that shares its unchanged values).  Each
    new order is a deep copy of the original with id ``{id}-S{n}`` (n counts on from the original's
    ``order_metadata.split_count``, which becomes the number of orders split off it so far),
    ``order_metadata.split_from`` = the original's id, its own items, no notes, shipments or
    discount list, no emails sent (``email_count`` 0 when the original had one), dates added and
    updated ``now``.  Every total that is set is divided with ``allocate``: quantity_total by the
    items' quantity, weight_total by weight x quantity, the money fields by price x quantity, so the
    pieces of each sum exactly to the original's.  ``SplitError`` if it cannot be done."""
    by = by if isinstance(by, SplitBy) else parse_by(by)
    groups = group_items(order.get("order_items") or [], by)
    if len(groups) <= 1:
        return [order]
    if order.get("id") in (None, ""):
        raise SplitError("an order without an id cannot be split: the new orders are numbered after it")
    source = str(order["id"])
    metadata = order.get("order_metadata") if isinstance(order.get("order_metadata"), dict) else {}
    before = _split_count(metadata.get(SPLIT_COUNT))
    shares = {name: allocate(order[name], [_weighs(group, _DIVISION[name][0]) for group in groups],
                             _DIVISION[name][1])
              for name in DECIMAL_FIELDS if order.get(name) is not None}

    first = dict(order, order_items=list(groups[0]), order_metadata={**metadata, SPLIT_COUNT: before + len(groups) - 1})
    pieces = [first]
    for number, group in enumerate(groups[1:], before + 1):
        piece = {key: copy.deepcopy(_NOT_INHERITED.get(key, value)) for key, value in order.items()}
        piece["id"] = f"{source}-S{number}"
        piece["order_items"] = copy.deepcopy(group)
        piece_metadata = piece.get("order_metadata") if isinstance(piece.get("order_metadata"), dict) else {}
        piece_metadata.pop(SPLIT_COUNT, None)
        piece_metadata[SPLIT_FROM] = source
        piece["order_metadata"] = piece_metadata
        if piece.get("email_count") is not None:
            piece["email_count"] = 0
        piece["date_added"] = piece["date_updated"] = now
        pieces.append(piece)
    for name, values in shares.items():
        for piece, value in zip(pieces, values):
            piece[name] = value
    for piece in pieces:
        try:
            bounded_value({name: piece[name] for name in shares}, f"share of order {piece['id']}")
        except OrderError as exc:
            raise SplitError(f"{exc}: the order's totals are too large or too fine to divide") from None
    return pieces


def why_not_split(order: dict[str, Any], by: SplitBy) -> str:
    """Why ``split_order`` leaves ``order`` whole (it has at most one group of items)."""
    items = order.get("order_items") or []
    if not items:
        return "the order has no items"
    value = by.value_of(items[0])
    if _group_key(value) != _NO_VALUE:
        every = "its one item has" if len(items) == 1 else f"all {len(items)} items have"
        return f"{every} {by} {to_json(value)}"
    if by.key is None:
        return f"no item has a {by.kind}"
    keys = sorted({key for item in items if isinstance(item.get(KEYED[by.kind]), dict)
                   for key in item[KEYED[by.kind]]})
    hint = did_you_mean(closest(by.key, keys))
    return f"no item has {by}" + (f" ({hint})" if hint else "")


# --- the action ---------------------------------------------------------------------------


class SplitParams(ActionParams):
    by: str = Field(min_length=1, description=f"what to split by: {FORMS}")


@action("Split Order", SplitParams, emits=("Order is Split",), static_check=check_by,
        touches=("order_items", "order_metadata", *DECIMAL_FIELDS))
def run_split_order(ctx: ActionContext, params: SplitParams) -> dict[str, Any]:
    """Split the order into one order per distinct value of an item field; fires "Order is Split" for each."""
    try:
        by = parse_by(params.by)
        orders = split_order(ctx.order, by, ctx.now())
    except SplitError as exc:
        raise ActionError(exc.describe()) from exc
    if len(orders) == 1:
        return {"split": False, "by": str(by), "reason": why_not_split(ctx.order, by)}
    ctx.order.update(orders[0])
    ctx.changed = True
    payload = {"source_order_id": str(ctx.order["id"])}
    ctx.emit("Order is Split", payload)
    for piece in orders[1:]:
        ctx.emit("Order is Split", dict(payload), order=piece)
    return {"split": True, "by": str(by), "pieces": [_summary(piece) for piece in orders]}


def _summary(order: dict[str, Any]) -> dict[str, Any]:
    totals = {name: order[name] for name in DECIMAL_FIELDS if order.get(name) is not None}
    return {"id": order["id"], "items": [item.get("id") for item in order["order_items"]], "totals": totals}
