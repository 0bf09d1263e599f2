"""The core order events of LANGUAGE.md section 6, registered in the default event catalogue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ruledesk.engine.model.catalogue import event


class Payload(BaseModel):
    """Base of inbound event payloads: declared fields are typed, other keys are kept."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class FolderChanged(Payload):
    from_folder: str = Field(description="the folder the order left")
    to_folder: str = Field(description="the folder the order is in now")


class ItemChanged(Payload):
    item_id: str | None = Field(None, description="id of the item that changed")


class NoteAdded(Payload):
    note: str = Field(description="text of the note")


class OrderDuplicated(Payload):
    source_order_id: str | None = Field(None, description="id of the order this one was copied from")
    store: str | None = Field(None, description="name of the store the original order belongs to")


class OrderSplit(Payload):
    source_order_id: str | None = Field(None, description="id of the order this one was split from")


class ShipmentAdded(Payload):
    tracking_number: str = Field(description="tracking number of the new shipment")
    carrier_code: str = Field(description="carrier, e.g. USPS, UPS, FedEx")
    shipment_method: str | None = Field(None, description="service level, e.g. Priority Mail")


event("Order is Imported", description="An order arrived from a store, an import or the order stream.")
event("Order is Created Manually", description="Someone created the order by hand.")
event("Folder is Changed", FolderChanged, "The order moved from one folder to another.")
event("Order Details Changed", description="Order-level details (email, totals, metadata, ...) were edited.")
event("Order Address Changed", description="The shipping or customer address was edited.")
event("Item Changed", ItemChanged, "An item of the order was added, edited or removed.")
event("Note Added", NoteAdded, "A note was added to the order.")
event("Order is Duplicated", OrderDuplicated, "The order is a copy of another order (Copy Order to Store).")
event("Order is Split", OrderSplit, "The order was split off another order (Split Order).")
event("Shipment is Added", ShipmentAdded, "A shipment with tracking was added to the order.")
event("Order Confirmed", description="The order was confirmed (payment accepted or approved for fulfilment).")
