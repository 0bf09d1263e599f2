"""The podOS submission lifecycle events (DESIGN.md, podOS), registered with source "podos"."""

from __future__ import annotations

from pydantic import Field

from ruledesk.engine.model.catalogue import NoPayload, event
from ruledesk.engine.model.events import Payload


class AfterSubmitted(Payload):
    podos_order_id: str | None = Field(None, description="the order's id at podOS")


class InvalidSku(Payload):
    skus: list[str] = Field(description="SKUs of the items podOS could not resolve to a variant")


class GeneralError(Payload):
    error: str = Field(description="what went wrong (HTTP status, timeout, refusal), after retries")


PODOS = "podos"

SCHEDULED = "Order Scheduled to podOS"
BEFORE = "Before Order Submitted to podOS"
AFTER = "After Order Submitted to podOS"
INVALID_SKU = "Order Not Submitted to podOS Because of Invalid SKU"
GENERAL_ERROR = "Order Not Submitted to podOS Because of General Error"
NO_PRODUCTS = "Order Not Submitted to podOS Because No Products Available"

event(SCHEDULED, NoPayload, "The order is queued for submission to podOS.", PODOS)
event(
    BEFORE,
    NoPayload,
    "The order is about to be sent to podOS; rules may still edit it.",
    PODOS,
)
event(AFTER, AfterSubmitted, "podOS accepted the order.", PODOS)
event(
    INVALID_SKU,
    InvalidSku,
    "Some items could not be matched to a podOS product variant.",
    PODOS,
)
event(
    GENERAL_ERROR,
    GeneralError,
    "Submitting to podOS failed (HTTP error, timeout or refusal) after retries.",
    PODOS,
)
event(
    NO_PRODUCTS,
    NoPayload,
    "The order has no items that podOS can print.",
    PODOS,
)
