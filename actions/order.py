"""Order and item actions: tags, checkout data, metadata, fields, shipping method, notes, Stop Processing Rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ruledesk.engine.model.catalogue import NoParams, StaticCheck, action
from ruledesk.engine.model.order import (
    Note,
    OrderError,
    format_datetime,
    item_field_problem,
    order_field_problem,
    validate_item_field,
    validate_order_field,
)
from ruledesk.engine.model.context import ActionContext, ActionError


class ActionParams(BaseModel):
    """Base of action parameter models: an unknown parameter is an error."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class TagOrderParams(ActionParams):
    name: str = Field(min_length=1, description="tag name")
    color: str | None = Field(None, description="tag color, e.g. #ff0000; none clears it")


class KeyValueParams(ActionParams):
    field: str = Field(min_length=1, description="key to set")
    value: str = Field(description="value to store")


class KeyParams(ActionParams):
    field: str = Field(min_length=1, description="key")


class FieldValueParams(ActionParams):
    field: str = Field(min_length=1, description="name of the field")
    value: Any = Field(description="new value, coerced to the field's type")


class ShippingMethodParams(ActionParams):
    method: str = Field(description="the new shipping method")


class ItemMetadataParams(ActionParams):
    field: str = Field(min_length=1, description="metadata key to set on the current item")
    value: Any = Field(description="value to store")


class NoteParams(ActionParams):
    text: str = Field(min_length=1, description="text of the note")


# --- helpers --------------------------------------------------------------------------------


def _assign(ctx: ActionContext, target: dict[str, Any], key: str, value: Any) -> Any:
    """Set ``target[key]``, marking the order changed if the value differs; returns the previous value."""
    previous = target.get(key)
    if key not in target or previous != value:
        target[key] = value
        ctx.changed = True
    return previous


def _remove(ctx: ActionContext, target: dict[str, Any], key: str) -> dict[str, Any]:
    removed = key in target
    if removed:
        del target[key]
        ctx.changed = True
    return {"removed": removed}


def _submap(owner: dict[str, Any], key: str) -> dict[str, Any]:
    """The map ``owner[key]`` (checkout_data, order_metadata, metadata), created if absent."""
    mapping = owner.get(key)
    if not isinstance(mapping, dict):
        mapping = owner[key] = {}
    return mapping


def _current_item(ctx: ActionContext, action_name: str) -> dict[str, Any]:
    if ctx.item is None:
        raise ActionError(
            f'"{action_name}" changes one item: use it inside "for item in order.order_items {{ ... }}"'
        )
    return ctx.item


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _field_check(
    problem: Callable[[str], tuple[str, str | None] | None], validate: Callable[[str, Any], Any]
) -> StaticCheck:
    """A static check of literal ``field`` and ``value`` parameters against a model's settable fields."""

    def check(literals: dict[str, Any]) -> list[tuple[str, str, str | None]]:
        field = literals.get("field")
        if not isinstance(field, str) or _is_template(field):
            return []
        found = problem(field)
        if found is not None:
            return [("field", *found)]
        if "value" in literals and not _is_template(literals["value"]):
            try:
                validate(field, literals["value"])
            except OrderError as exc:
                return [("value", str(exc), None)]
        return []

    return check


# --- tags -----------------------------------------------------------------------------------


@action("Tag Order", TagOrderParams, touches=("tag_name", "tag_color"))
def tag_order(ctx: ActionContext, params: TagOrderParams) -> None:
    """Tag the order: set tag_name and tag_color."""
    _assign(ctx, ctx.order, "tag_name", params.name)
    _assign(ctx, ctx.order, "tag_color", params.color)


@action("Remove Tag", touches=("tag_name", "tag_color"))
def remove_tag(ctx: ActionContext, params: NoParams) -> None:
    """Remove the order's tag: clear tag_name and tag_color."""
    _assign(ctx, ctx.order, "tag_name", None)
    _assign(ctx, ctx.order, "tag_color", None)


# --- checkout data and metadata -------------------------------------------------------------


@action("Set Checkout Data", KeyValueParams, touches=("checkout_data",))
def set_checkout_data(ctx: ActionContext, params: KeyValueParams) -> None:
    """Set one key of the order's checkout_data."""
    _assign(ctx, _submap(ctx.order, "checkout_data"), params.field, params.value)


@action("Remove Checkout Data", KeyParams, touches=("checkout_data",))
def remove_checkout_data(ctx: ActionContext, params: KeyParams) -> dict[str, Any]:
    """Remove one key from the order's checkout_data."""
    return _remove(ctx, _submap(ctx.order, "checkout_data"), params.field)


@action("Set Order Metadata", KeyValueParams, touches=("order_metadata",))
def set_order_metadata(ctx: ActionContext, params: KeyValueParams) -> None:
    """Set one key of the order's order_metadata."""
    _assign(ctx, _submap(ctx.order, "order_metadata"), params.field, params.value)


@action("Remove Order Metadata", KeyParams, touches=("order_metadata",))
def remove_order_metadata(ctx: ActionContext, params: KeyParams) -> dict[str, Any]:
    """Remove one key from the order's order_metadata."""
    return _remove(ctx, _submap(ctx.order, "order_metadata"), params.field)


@action("Set Order Metadata Timestamp", KeyParams, touches=("order_metadata",))
def set_order_metadata_timestamp(ctx: ActionContext, params: KeyParams) -> dict[str, Any]:
    """Set one key of the order's order_metadata to the current time, "YYYY-MM-DD HH:MM:SS" UTC."""
    stamp = format_datetime(ctx.now())
    _assign(ctx, _submap(ctx.order, "order_metadata"), params.field, stamp)
    return {"value": stamp}


# --- fields ---------------------------------------------------------------------------------


@action("Set Order Field", FieldValueParams, static_check=_field_check(order_field_problem, validate_order_field))
def set_order_field(ctx: ActionContext, params: FieldValueParams) -> dict[str, Any]:
    """Set a top-level field of the order (email, shipping_method, order_total, ...) to a value of its type."""
    try:
        value = validate_order_field(params.field, params.value)
    except OrderError as exc:
        raise ActionError(str(exc)) from exc
    previous = _assign(ctx, ctx.order, params.field, value)
    return {"field": params.field, "from": previous, "to": value}


@action("Set Shipping Method", ShippingMethodParams, touches=("shipping_method",))
def set_shipping_method(ctx: ActionContext, params: ShippingMethodParams) -> dict[str, Any]:
    """Set the order's shipping_method."""
    previous = _assign(ctx, ctx.order, "shipping_method", params.method)
    return {"from": previous, "to": params.method}


@action("Set Item Metadata", ItemMetadataParams, needs_item=True, touches=("order_items",))
def set_item_metadata(ctx: ActionContext, params: ItemMetadataParams) -> dict[str, Any]:
    """Set one metadata key of the current item (inside a for block)."""
    item = _current_item(ctx, "Set Item Metadata")
    _assign(ctx, _submap(item, "metadata"), params.field, params.value)
    return {"item": item.get("id")}


@action("Set Item Field", FieldValueParams, static_check=_field_check(item_field_problem, validate_item_field),
        needs_item=True, touches=("order_items",))
def set_item_field(ctx: ActionContext, params: FieldValueParams) -> dict[str, Any]:
    """Set a top-level field of the current item (name, code, price, quantity, ...) inside a for block."""
    item = _current_item(ctx, "Set Item Field")
    try:
        value = validate_item_field(params.field, params.value)
    except OrderError as exc:
        raise ActionError(str(exc)) from exc
    previous = _assign(ctx, item, params.field, value)
    return {"item": item.get("id"), "field": params.field, "from": previous, "to": value}


# --- notes and flow -------------------------------------------------------------------------


@action("Add Note", NoteParams, emits=("Note Added",), touches=("order_notes",))
def add_note(ctx: ActionContext, params: NoteParams) -> None:
    """Add a note to the order; fires "Note Added"."""
    note = Note(content=params.text, username="ruledesk", date_added=ctx.now())
    ctx.order.setdefault("order_notes", []).append(note.model_dump())
    ctx.changed = True
    ctx.emit("Note Added", {"note": params.text})


@action("Stop Processing Rules", mutates_order=False, touches=())
def stop_processing_rules(ctx: ActionContext, params: NoParams) -> None:
    """End the rules for this event and this order after the current rule."""
    ctx.stop()
