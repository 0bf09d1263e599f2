"""The podOS job handlers: the submission lifecycle and shipments coming back (DESIGN.md, podOS).

"Submit Order to podOS" records a ``podos.submit`` job.  Its handler emits "Before Order Submitted
to podOS" with a continuation, the ``podos.send`` job, which is recorded when that event's rules
have run: so what is sent is the order as those rules left it.  ``podos.send`` resolves the items,
submits them (the submit job's key is the Idempotency-Key, and podOS keeps one order per Order
Desk order, so a retry or a second submission never prints twice) and ends in exactly one of:

- "After Order Submitted to podOS" (payload ``podos_order_id``), the order moved to the After
  Import folder, and the first status poll scheduled;
- "... Because of Invalid SKU" (payload ``skus``): items that did not resolve (nothing is sent)
  or that podOS refused;
- "... Because No Products Available": no item is a podOS item;
- "... Because of General Error" (payload ``error``, never the token): a refusal at once, a
  transient failure (connection, timeout, 429, 5xx) once the job's attempts are spent.

Shipments come back by ``podos.poll`` (a chain of scheduled polls of the status endpoint) and by
``podos.shipment`` (queued by the daemon's callback endpoint): a shipment new to the order is
added, "Shipment is Added" fires and the order moves to the After Shipment folder; a shipment the
order has already (same tracking number) changes nothing.  A copied order's new shipment is passed
back to its original by the "Shipment is Added" event itself (actions/stores.py).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ruledesk.engine.model.context import Emitted
from ruledesk.engine.model.jobs import (CallbackError, Done, Failed, Job, JobContext, Later, Outcome, Retry, callback,
                                        handler, preview)
from ruledesk.engine.model.order import Shipment
from ruledesk.engine.model.settings import PodosSettings

from ruledesk.actions.podos.actions import SUBMIT
from ruledesk.actions.podos.client import PodosClient, PodosError, Submission
from ruledesk.actions.podos.events import AFTER, BEFORE, GENERAL_ERROR, INVALID_SKU, NO_PRODUCTS
from ruledesk.actions.podos.resolve import plan_submission

SEND = "podos.send"
POLL = "podos.poll"
SHIPMENT = "podos.shipment"
SHIPMENT_ADDED = "Shipment is Added"
FOLDER_CHANGED = "Folder is Changed"

POLL_FOR = _dt.timedelta(days=30)  # how long an unshipped order's status is polled
MAX_WAIT = 7 * 24 * 3600.0  # the longest Retry-After honoured (seconds)
RETRY_BASE = 2.0  # seconds: the first job-level retry waits up to this (full jitter, doubling)
VARIANTS_TTL = 300.0  # seconds a GFN product's variants are cached for item resolution

class NotConfigured(Exception):
    """The order's store has no podOS settings."""


# ---- clients -----------------------------------------------------------------------------------

_clients: dict[tuple, PodosClient] = {}
_clients_lock = threading.Lock()
_variants: dict[tuple, tuple[float, list[dict[str, Any]]]] = {}


def default_client(settings: PodosSettings) -> PodosClient:
    """One pooled client per podOS (URL, project, token, timeouts), shared by the process's jobs."""
    key = (settings.url, settings.project, settings.token.get_secret_value(), settings.timeout, settings.retries)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = PodosClient.from_settings(settings)
        return client


def client_for(ctx: JobContext) -> tuple[PodosSettings, PodosClient]:
    settings = getattr(ctx.store, "podos", None)
    if settings is None:
        raise NotConfigured(f"podOS is not configured for the store {ctx.store.name!r} (add podos: to its settings)")
    factory = ctx.clients.get("podos") or default_client
    return settings, factory(settings)


def variants_of(client: PodosClient, clock: Callable[[], float] = time.monotonic) -> Callable[[str], list[dict]]:
    """The variants of a GFN product, cached a few minutes per client (resolution asks per item);
    a product podOS does not know has none."""

    def lookup(product_id: str) -> list[dict[str, Any]]:
        key = (id(client), product_id)
        hit = _variants.get(key)
        if hit is not None and clock() - hit[0] < VARIANTS_TTL:
            return hit[1]
        try:
            found = client.variants(product_id)
        except PodosError as exc:
            if exc.status == 404:
                found = []
            else:
                raise
        _variants[key] = (clock(), found)
        return found

    return lookup


@preview(SUBMIT)
def request_preview(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The exact request ``podos.send`` would make for the order as it is now (after resolution,
    Shipping Class Match, Product Code Match and Skip) and the event it would lead to; nothing is
    sent (only a GFN product's variants are read, to resolve its items)."""
    try:
        settings, client = client_for(ctx)
    except NotConfigured as exc:
        return {"outcome": GENERAL_ERROR, "error": str(exc)}
    plan = plan_submission(ctx.order, settings, variants_of(client), store_id=ctx.store.id)
    outcome = INVALID_SKU if plan.unresolved else NO_PRODUCTS if not plan.items else None
    request = {"method": "POST", "url": f"{settings.url.rstrip('/')}/v1/orders",
               "headers": {"Idempotency-Key": job.key, "X-Podos-Project": settings.project,
                           "Authorization": "Bearer (the store's podOS token)"},
               "body": plan.body}
    # ``outcome``: "sent", or the failure event that would fire instead (nothing would be sent then)
    return {"outcome": outcome or "sent", "request": request, "unresolved": plan.unresolved,
            "skipped": plan.skipped}


# ---- the submission ------------------------------------------------------------------------------


@handler(SUBMIT)
def submit(job: Job, ctx: JobContext) -> Outcome:
    """Start the submission: "Before Order Submitted to podOS", then (once its rules ran) the send."""
    if getattr(ctx.store, "podos", None) is None:
        return _general_error(f"podOS is not configured for the store {ctx.store.name!r}")
    send = Job(SEND, f"{job.key}.send", job.action, job.rule, job.event_id, job.order_id, job.store,
               {**job.params, "idempotency_key": job.key})
    return Done(events=(Emitted(BEFORE, {}, then=send),))


@handler(SEND)
def send(job: Job, ctx: JobContext) -> Outcome:
    """Resolve the items and submit the order as it is now; one outcome event."""
    try:
        settings, client = client_for(ctx)
        plan = plan_submission(ctx.order, settings, variants_of(client), store_id=ctx.store.id)
        if plan.unresolved:
            return Failed(f"{len(plan.unresolved)} item(s) match no podOS variant: {', '.join(plan.unresolved)}",
                          (Emitted(INVALID_SKU, {"skus": plan.unresolved}),), {"request": plan.body})
        if not plan.items:
            return Failed("the order has no podOS items", (Emitted(NO_PRODUCTS, {}),), {"request": plan.body})
        try:
            submission = client.submit(plan.body, job.params.get("idempotency_key") or job.key)
        except PodosError as exc:
            # the order changed between two attempts (same key, another body): podOS has an order
            # for it already if the first attempt got through, and that is the one it prints
            existing = client.find(str(ctx.order.get("id"))) if exc.code == "idempotency_conflict" else None
            if existing is None:
                raise
            submission = Submission(existing, False)
    except NotConfigured as exc:
        return _general_error(str(exc))
    except PodosError as exc:
        if exc.code == "invalid_sku" and exc.skus:
            return Failed(str(exc), (Emitted(INVALID_SKU, {"skus": list(exc.skus)}),))
        if exc.transient and not ctx.final:
            return Retry(_retry_at(ctx, exc), str(exc))
        return _general_error(str(exc) if not exc.transient else f"{exc} (after {ctx.attempt} attempts)")
    except Exception as exc:  # anything else (a podOS answer nothing expected): the rules still hear of it
        return _general_error(_without_token(f"{type(exc).__name__}: {exc}", ctx))
    podos_id = submission.order.get("id")
    if not isinstance(podos_id, (str, int)) or isinstance(podos_id, bool) or not str(podos_id).strip():
        return _general_error(f"podOS accepted the order but answered without an order id ({type(podos_id).__name__})")
    podos_id = str(podos_id)
    order = copy.deepcopy(ctx.order)
    order.setdefault("order_metadata", {})["podos_order_id"] = podos_id
    events = [Emitted(AFTER, {"podos_order_id": podos_id})]
    events += _move(order, settings.after_import_folder)
    poll = Job(POLL, f"{job.key}.poll.1", job.action, job.rule, job.event_id, job.order_id, job.store,
               {"podos_order_id": podos_id, "poll": 1, "until": (ctx.now() + POLL_FOR).isoformat()})
    return Done(tuple(events), {"podos_order_id": podos_id, "created": submission.created, "request": plan.body},
                order=order, jobs=(Later(poll, ctx.now() + _dt.timedelta(seconds=settings.poll_interval)),))


def _without_token(text: str, ctx: JobContext) -> str:
    settings = getattr(ctx.store, "podos", None)
    token = settings.token.get_secret_value() if settings is not None else ""
    return text.replace(token, "**********") if token else text


def _general_error(error: str) -> Failed:
    return Failed(error, (Emitted(GENERAL_ERROR, {"error": error}),))


def _retry_at(ctx: JobContext, exc: PodosError) -> _dt.datetime:
    """Backoff with full jitter, never sooner than the server's Retry-After."""
    at = ctx.backoff(base=RETRY_BASE)
    if exc.retry_after is not None:  # the client caps it (a week); a bad value never overflows here
        at = max(at, ctx.now() + _dt.timedelta(seconds=min(float(exc.retry_after), MAX_WAIT)))
    return at


def _move(order: dict[str, Any], folder: str | None) -> list[Emitted]:
    """The integration's own folder move (After Import, After Shipment), with "Folder is Changed"."""
    previous = order.get("folder") or "New"
    if not folder or folder == previous:
        return []
    order["folder"] = folder
    return [Emitted(FOLDER_CHANGED, {"from_folder": previous, "to_folder": folder})]


# ---- shipments back ------------------------------------------------------------------------------


@handler(POLL)
def poll(job: Job, ctx: JobContext) -> Outcome:
    """Ask podOS for the order's status; add the shipments new to the order; poll again later until
    it is shipped or cancelled (or ``POLL_FOR`` has passed)."""
    try:
        settings, client = client_for(ctx)
        status = client.order(job.params["podos_order_id"])
    except NotConfigured as exc:
        return Failed(str(exc))
    except PodosError as exc:
        if exc.transient and not ctx.final:
            return Retry(_retry_at(ctx, exc), str(exc))
        if exc.transient:  # podOS is down for a while: keep polling at the usual pace
            return Done(detail={"error": str(exc)}, jobs=_next_poll(job, ctx, settings))
        return Failed(str(exc))
    done = _shipments(job, ctx, settings, clean_shipments(status.get("shipments")))
    finished = status.get("status") in ("shipped", "cancelled")
    return Done(done.events, {**done.detail, "status": status.get("status")}, order=done.order,
                jobs=() if finished else _next_poll(job, ctx, settings))


def _next_poll(job: Job, ctx: JobContext, settings: PodosSettings) -> tuple[Later, ...]:
    number = int(job.params.get("poll", 1)) + 1
    until = _dt.datetime.fromisoformat(job.params["until"]) if job.params.get("until") else None
    at = ctx.now() + _dt.timedelta(seconds=settings.poll_interval)
    if until is not None and at > until:
        return ()
    key = job.key.rsplit(".poll.", 1)[0] + f".poll.{number}"
    return (Later(Job(POLL, key, job.action, job.rule, job.event_id, job.order_id, job.store,
                      {**job.params, "poll": number}), at),)


@handler(SHIPMENT)
def shipment(job: Job, ctx: JobContext) -> Outcome:
    """A shipment podOS called back with (queued by the daemon's callback endpoint)."""
    settings = getattr(ctx.store, "podos", None)
    if settings is None:
        return Failed(f"podOS is not configured for the store {ctx.store.name!r}")
    return _shipments(job, ctx, settings, job.params.get("shipments") or [])


def _shipments(job: Job, ctx: JobContext, settings: PodosSettings, shipments: list[dict[str, Any]]) -> Done:
    """Add the shipments the order does not have yet (by tracking number); none new: nothing changes."""
    order = copy.deepcopy(ctx.order)
    have = {s.get("tracking_number") for s in order.get("order_shipments") or []}
    added: list[dict[str, Any]] = []
    events: list[Emitted] = []
    for item in shipments:
        number = item.get("tracking_number")
        if not number or number in have:
            continue
        have.add(number)
        record = Shipment(order_id=order.get("id"), store_id=ctx.store.id, tracking_number=number,
                          carrier_code=item.get("carrier"), shipment_method=item.get("method"),
                          tracking_url=item.get("tracking_url"), status="shipped",
                          date_shipped=_when(item.get("shipped_at")), date_added=ctx.now()).model_dump()
        order.setdefault("order_shipments", []).append(record)
        added.append(record)
        events.append(Emitted(SHIPMENT_ADDED, {"tracking_number": number, "carrier_code": item.get("carrier") or "",
                                               "shipment_method": item.get("method"),
                                               "tracking_url": item.get("tracking_url")}))
    if not added:
        return Done(detail={"shipments_added": 0})
    events += _move(order, settings.after_shipment_folder)
    return Done(tuple(events), {"shipments_added": len(added)}, order=order)


SHIPMENT_FIELDS = ("tracking_number", "carrier", "method", "tracking_url", "shipped_at")


def clean_shipments(value: Any) -> list[dict[str, str]]:
    """The shipments of a podOS answer or callback that have a tracking number, with their known
    fields as text (podOS's answer is input: anything else is left out)."""
    if not isinstance(value, list):
        return []
    cleaned = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("tracking_number"), (str, int)):
            continue
        fields = {name: str(item[name]) for name in SHIPMENT_FIELDS
                  if isinstance(item.get(name), (str, int, float)) and not isinstance(item.get(name), bool)}
        if fields.get("tracking_number", "").strip():
            cleaned.append(fields)
    return cleaned


@callback("podos")
def shipped(settings: Any, headers: Mapping[str, str], body: bytes, order_exists: Callable[[str], bool]) -> list[Job]:
    """podOS calls back when an order ships (docs/podos-api.md): the body is signed with the store's
    podOS token (HMAC-SHA256, ``X-Podos-Signature``); the shipments are queued as a job of their order,
    keyed by the tracking numbers, so the same callback twice is one job (and a shipment the order
    has already changes nothing)."""
    podos = getattr(settings, "podos", None)
    if podos is None:
        raise CallbackError(404, f"podOS is not configured for the store {settings.name!r}")
    expected = "sha256=" + hmac.new(podos.token.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("x-podos-signature", "").encode(), expected.encode()):
        raise CallbackError(401, "the X-Podos-Signature does not match this store's podOS token")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CallbackError(400, f"the body is not JSON: {exc}") from None
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, dict) or not order.get("order_desk_order_id") or not isinstance(
            order.get("shipments", []), list):
        raise CallbackError(422, 'expected {"order": {"order_desk_order_id": ..., "shipments": [...]}}')
    order_id = str(order["order_desk_order_id"])
    if not order_exists(order_id):
        raise CallbackError(404, f"store {settings.name!r} has no order {order_id!r}")
    shipments = clean_shipments(order.get("shipments"))
    if not shipments:
        return []
    numbers = "\0".join(sorted(item["tracking_number"] for item in shipments))
    key = "podos-ship-" + hashlib.sha256(f"{settings.name}\0{order_id}\0{numbers}".encode()).hexdigest()[:32]
    return [Job(SHIPMENT, key, "podOS shipment callback", "", f"podos-callback:{order.get('id')}", order_id,
                settings.name, {"podos_order_id": str(order.get("id")), "shipments": shipments})]


def _when(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
