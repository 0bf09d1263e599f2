"""Several stores: Copy Order to Store, Move Order to Store, and a copied order's shipments passed back to its original.

Order Desk's rules (its "Copy/Move Orders Between Stores" guide):

- A **copy** is a new, separate order in the other store that keeps a link to the original: its
  ``order_metadata`` names the original's store and id (``copied_from_store``,
  ``copied_from_id``).  When the copy gets a shipment, however it gets it (a rule's Add Shipment,
  podOS shipping it, an incoming "Shipment is Added"), the shipment is passed back to the original,
  which fires its own "Shipment is Added".  "Order is Imported" and then "Order is Duplicated" fire
  for the copy, in its store, so that store's rules run on it.
- A **move** takes the order out of its store into the other one, where "Order is Imported"
  fires; the link to where it came from is broken (no shipment goes back), as Order Desk warns.

The copy or moved order keeps the order's id (orders are identified by store and id) unless the
action gives another (``id: "ACME-{{ order.id }}"``), and starts in the other store's "New" folder.  Copying or moving an order into the store it was copied from is
refused (it would replace the original).  In the daemon the copy's events run under the copy's
own lease (the engine hands them on: ``Engine(handoff=True)``); chains of copies are bounded by
the depth limit like any cascade.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field

from ruledesk.engine.model.catalogue import action, followup
from ruledesk.engine.model.context import ActionContext, ActionError, Emitted
from ruledesk.engine.model.jobs import Done, Job, JobContext, Outcome, handler, job_key
from ruledesk.engine.model.order import Shipment, dump_value

from ruledesk.actions.order import ActionParams

IMPORTED = "Order is Imported"
DUPLICATED = "Order is Duplicated"
SHIPMENT_ADDED = "Shipment is Added"
PASSBACK = "stores.passback"  # the job kind that adds a copy's shipment to its original

COPIED_FROM_STORE = "copied_from_store"  # order_metadata keys of a copy's link to its original
COPIED_FROM_ID = "copied_from_id"
MOVED_FROM_STORE = "moved_from_store"  # where a moved order came from (information only: no link)


class StoreParams(ActionParams):
    store: str = Field(min_length=1, description="name of the other store (as the configuration names it)")
    id: str | None = Field(None, min_length=1, description="the order's id in the other store (default: its id "
                                                           "here), e.g. \"ACME-{{ order.id }}\"")


def _other_order(ctx: ActionContext, target: str, verb: str, new_id: str | None
                 ) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A copy of the order for store ``target`` (in its "New" folder, with id ``new_id`` if given,
    without the link it may have), the name of the order's own store, and the copy's order_metadata."""
    here = str(ctx.store.get("name"))
    if target == here:
        raise ActionError(f"the order is in store {target!r} already: {verb} it to another store")
    meta = ctx.order.get("order_metadata") or {}
    if meta.get(COPIED_FROM_STORE) == target:
        raise ActionError(f"this order is a copy of order {meta.get(COPIED_FROM_ID)} of store {target!r}: "
                          f"{verb} it there would replace the original")
    other = copy.deepcopy(ctx.order)
    other["folder"] = "New"
    if new_id is not None:
        other["id"] = new_id
    other_meta = other.get("order_metadata")
    if not isinstance(other_meta, dict):
        other_meta = other["order_metadata"] = {}
    for key in (COPIED_FROM_STORE, COPIED_FROM_ID, MOVED_FROM_STORE):
        other_meta.pop(key, None)
    return other, here, other_meta


@action("Copy Order to Store", StoreParams, emits=(IMPORTED, DUPLICATED), mutates_order=False, touches=())
def copy_order_to_store(ctx: ActionContext, params: StoreParams) -> dict[str, Any]:
    """Copy the order into another store (a separate order linked to this one: its shipments come back
    here); fires "Order is Imported" and "Order is Duplicated" for the copy, in that store."""
    other, here, meta = _other_order(ctx, params.store, "copying", params.id)
    meta[COPIED_FROM_STORE] = here
    meta[COPIED_FROM_ID] = ctx.order.get("id")
    ctx.emit(IMPORTED, {}, order=other, store=params.store)
    ctx.emit(DUPLICATED, {"source_order_id": ctx.order.get("id"), "store": here}, order=other, store=params.store)
    return {"store": params.store, "order_id": other.get("id")}


@action("Move Order to Store", StoreParams, emits=(IMPORTED,), touches=None)
def move_order_to_store(ctx: ActionContext, params: StoreParams) -> dict[str, Any]:
    """Move the order into another store: it leaves this one (no rule runs on it here any more) and
    its link to where it came from is broken; fires "Order is Imported" there."""
    other, here, meta = _other_order(ctx, params.store, "moving", params.id)
    meta[MOVED_FROM_STORE] = here
    ctx.emit(IMPORTED, {}, order=other, store=params.store)
    ctx.leave(params.store)
    return {"from": here, "to": params.store, "order_id": other.get("id")}


# ---- shipments passed back ---------------------------------------------------------------------


@followup(SHIPMENT_ADDED)
def pass_shipment_back(order: dict[str, Any], payload: dict[str, Any], store: str, event_id: str) -> list[Job]:
    """A copied order's new shipment goes back to its original: a job of the original order (it
    runs under the original's lease), keyed by the event, so the same event passes it back once."""
    meta = order.get("order_metadata") or {}
    origin_store, origin_id = meta.get(COPIED_FROM_STORE), meta.get(COPIED_FROM_ID)
    number = payload.get("tracking_number")
    if not origin_store or origin_id in (None, "") or not number:
        return []
    shipment = next((s for s in order.get("order_shipments") or () if s.get("tracking_number") == number), None)
    fields = {key: (shipment or payload).get(key) for key in ("tracking_number", "carrier_code", "shipment_method",
                                                               "tracking_url", "date_shipped")}
    params = {"shipment": dump_value({k: v for k, v in fields.items() if v is not None}),
              "from_store": store, "from_order_id": order.get("id")}
    return [Job(PASSBACK, job_key(event_id, "(shipment passback)", 0, 1), "Pass Shipment to Original", "",
                event_id, str(origin_id), str(origin_store), params)]


@handler(PASSBACK)
def add_passed_shipment(job: Job, ctx: JobContext) -> Outcome:
    """Add the copy's shipment to the original (once: a tracking number it has already changes
    nothing) and fire "Shipment is Added" there."""
    order = ctx.order  # the runners never run a job of an order its store does not hold (jobs.gone)
    shipment = dict(job.params.get("shipment") or {})
    number = shipment.get("tracking_number")
    if any(s.get("tracking_number") == number for s in order.get("order_shipments") or ()):
        return Done(detail={"passed_back": False, "reason": f"order {job.order_id} has shipment {number} already"})
    record = Shipment(order_id=order.get("id"), store_id=getattr(ctx.store, "id", None), date_added=ctx.now(),
                      **shipment).model_dump()
    order.setdefault("order_shipments", []).append(record)
    payload = {"tracking_number": number, "carrier_code": shipment.get("carrier_code") or "",
               "shipment_method": shipment.get("shipment_method"),
               "from_store": job.params.get("from_store"), "from_order_id": job.params.get("from_order_id")}
    return Done((Emitted(SHIPMENT_ADDED, payload),), {"passed_back": True, "tracking_number": number}, order=order)
