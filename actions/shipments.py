"""Shipment actions: Add Shipment."""

from __future__ import annotations

from pydantic import Field

from ruledesk.engine.model.catalogue import action
from ruledesk.engine.model.order import Shipment
from ruledesk.engine.model.context import ActionContext

from ruledesk.actions.order import ActionParams


class AddShipmentParams(ActionParams):
    tracking_number: str = Field(min_length=1, description="the carrier's tracking number")
    carrier_code: str = Field(min_length=1, description="carrier, e.g. USPS, UPS, FedEx")
    shipment_method: str | None = Field(None, description="service level, e.g. Priority Mail")


@action("Add Shipment", AddShipmentParams, emits=("Shipment is Added",), touches=("order_shipments",))
def add_shipment(ctx: ActionContext, params: AddShipmentParams) -> None:
    """Add a shipment with tracking to the order; fires "Shipment is Added"."""
    shipment = Shipment(
        order_id=ctx.order.get("id"),
        store_id=ctx.store.get("id"),
        tracking_number=params.tracking_number,
        carrier_code=params.carrier_code,
        shipment_method=params.shipment_method,
        date_added=ctx.now(),
    )
    ctx.order.setdefault("order_shipments", []).append(shipment.model_dump())
    ctx.changed = True
    ctx.emit("Shipment is Added", params.model_dump())
