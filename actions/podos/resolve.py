"""What ruledesk sends podOS for an order: item resolution, Product Code Match and Skip, Shipping
Class Match, and the request body of ``POST /v1/orders`` (docs/podos-api.md).

Pure: the only outside knowledge, the variants of a GFN product, comes from ``variants_of``
(the client, with a cache, in a job; the same in a dry run).  The order is never changed: Product
Code Match changes what is sent, not the order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ruledesk.engine.model.settings import PODOS_MAIL_CLASSES, PodosSettings

VARIANT_ID = "podos_variant_id"  # a pre-designed product: sent as is
GFN_VARIANT_ID = "podos_gfn_variant_id"  # one exact GFN variation
GFN_PRODUCT_ID = "podos_gfn_product_id"  # a GFN product: the variant comes from the item's variations
FIELDS = (VARIANT_ID, GFN_VARIANT_ID, GFN_PRODUCT_ID)
PRINT_URL = "print_url"

ADDRESS_FIELDS = ("first_name", "last_name", "company", "address1", "address2", "city", "state", "postal_code",
                  "country", "phone")

VariantsOf = Callable[[str], list[dict[str, Any]]]


@dataclass
class Plan:
    """A submission as it would be sent: ``body`` (items already resolved), the codes of the items
    that could not be resolved (``unresolved``: nothing may be sent) and those Product Code Skip left
    out (``skipped``)."""

    body: dict[str, Any]
    unresolved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.body["items"]


def _norm(text: Any) -> str:
    """Variation names and values compare without regard to case or surrounding space."""
    return str(text).strip().casefold()


def item_field(item: Mapping[str, Any], name: str) -> str | None:
    """A podOS field of an item, from its metadata or else its variations (as Order Desk allows
    either); names compare without regard to case or surrounding space, an empty value is none."""
    for where in ("metadata", "variation_list"):
        values = item.get(where)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if _norm(key) == name and value is not None and str(value).strip():
                return str(value).strip()
    return None


def is_podos_item(item: Mapping[str, Any]) -> bool:
    return any(item_field(item, name) is not None for name in FIELDS)


def match_variant(item: Mapping[str, Any], variants: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one variant whose every option the item's variations name with the same value; None when
    no variant or more than one matches (an ambiguous match is not guessed)."""
    chosen = {_norm(k): _norm(v) for k, v in (item.get("variation_list") or {}).items()
              if _norm(k) not in FIELDS and v is not None}
    found = [v for v in variants
             if v.get("options") and all(chosen.get(_norm(k)) == _norm(value) for k, value in v["options"].items())]
    return found[0] if len(found) == 1 else None


def mail_class(shipping_method: Any, settings: PodosSettings) -> str:
    """Shipping Class Match: the mapped mail class for the order's method (exact name), else the
    method itself when it is a podOS mail class, else the Default Mail Class."""
    method = shipping_method if isinstance(shipping_method, str) else ""
    if method in settings.shipping_class_match:
        return settings.shipping_class_match[method]
    if method in PODOS_MAIL_CLASSES:
        return method
    return settings.default_mail_class


def _quantity(value: Any) -> int:
    try:
        number = Decimal(str(value if value is not None else 1))
    except InvalidOperation:
        return 0
    return int(number) if number == number.to_integral_value() else 0


def item_code(item: Mapping[str, Any]) -> str:
    """How an item is named to podOS and in ``skus``: its code, else its name, else its id."""
    for key in ("code", "name", "id"):
        value = item.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return "(no code)"


def plan_submission(order: Mapping[str, Any], settings: PodosSettings, variants_of: VariantsOf, *,
                    store_id: str | None = None) -> Plan:
    """The request body for ``order``: per item, Product Code Skip (left out), Product Code Match
    (sent as the SKU or SKUs it maps to), else ``podos_variant_id`` > ``podos_gfn_variant_id`` >
    ``podos_gfn_product_id`` (the variant matching the item's variations); items with none of these
    are not podOS items and are left out."""
    skip = set(settings.product_code_skip)
    items: list[dict[str, Any]] = []
    plan = Plan({})
    for item in order.get("order_items") or []:
        code = item_code(item)
        quantity = _quantity(item.get("quantity"))
        if code in skip:
            plan.skipped.append(code)
            continue
        line = {"line": str(item["id"])} if item.get("id") is not None else {}
        print_url = item_field(item, PRINT_URL)
        extra = {"print_url": print_url} if print_url else {}
        if code in settings.product_code_match:
            if quantity < 1:
                plan.skipped.append(code)  # none (or a fraction) of an item: nothing to print
                continue
            items.extend({**line, "sku": sku, "quantity": quantity, **extra}
                         for sku in settings.product_code_match[code])
            continue
        resolved = _resolve(item, variants_of)
        if resolved is None:
            continue  # not a podOS item
        if not resolved:
            plan.unresolved.append(code)
            continue
        if quantity < 1:
            plan.skipped.append(code)  # none (or a fraction) of an item: nothing to print
            continue
        items.append({**line, "sku": code, **resolved, "quantity": quantity, **extra})
    plan.body = _body(order, settings, items, store_id)
    return plan


def _resolve(item: Mapping[str, Any], variants_of: VariantsOf) -> dict[str, str] | None:
    """The item's podOS reference: {"variant_id"} or {"gfn_variant_id"}; {} when it names a podOS
    product whose variant cannot be chosen; None when it is not a podOS item."""
    variant = item_field(item, VARIANT_ID)
    if variant is not None:
        return {"variant_id": variant}
    gfn_variant = item_field(item, GFN_VARIANT_ID)
    if gfn_variant is not None:
        return {"gfn_variant_id": gfn_variant}
    product = item_field(item, GFN_PRODUCT_ID)
    if product is None:
        return None
    chosen = match_variant(item, variants_of(product))
    return {"gfn_variant_id": str(chosen["id"])} if chosen is not None else {}


def _body(order: Mapping[str, Any], settings: PodosSettings, items: list[dict[str, Any]],
          store_id: str | None) -> dict[str, Any]:
    shipping = order.get("shipping") or {}
    ship_to = {name: _text(shipping.get(name)) for name in ADDRESS_FIELDS}
    ship_to["email"] = _text(order.get("email"))
    body: dict[str, Any] = {
        "order_desk_order_id": str(order.get("id")),
        "store_id": store_id,
        "mail_class": mail_class(order.get("shipping_method"), settings),
        "ship_to": ship_to,
        "items": items,
    }
    if settings.callback_url:
        body["callback_url"] = settings.callback_url
    return body


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
