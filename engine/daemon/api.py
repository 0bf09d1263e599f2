"""The HTTP API (FastAPI on uvicorn; the OpenAPI document at /openapi.json).

Every request but /healthz, /readyz and /metrics carries ``Authorization: Bearer TOKEN``: a
token belongs to one store and has the read or write scope (``ruledesk tokens create``).  No
token or an unknown one: 401; a read token writing, or a token of another store: 403.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ruledesk.engine.daemon.intake import IntakeError, button_press, parse_body
from ruledesk.engine.daemon.service import Daemon
from ruledesk.engine.lang.compiler import button_key
from ruledesk.engine.model.jobs import CALLBACKS, CallbackError, job_row
from ruledesk.engine.run.engine import EventError
from ruledesk.engine.store.base import Inbound, StoreError, Token
from ruledesk.engine.model.order import to_json_text
from ruledesk.grammar.diagnostics import closest

DEFAULT_MAX_BODY = 5 * 1024 * 1024
TOKEN_CACHE_SECONDS = 30.0  # a token deleted from the store stops working within this time

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "LANGUAGE.md section 8's input: an event, or a bare Order Desk order (taken as "
                   "\"Order is Imported\")",
    "properties": {
        "event": {"type": "string", "description": "the event's name, e.g. \"Folder is Changed\""},
        "order": {"type": "object", "description": "the Order Desk order (at least its id)"},
        "payload": {"type": "object"},
        "store": {"type": "string", "description": "the store's name (default: the token's store)"},
        "id": {"type": "string", "description": "the event id: a repeated id is acknowledged and ignored"},
    },
}
_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "at": {"type": "string"}}}}}}


class ApiError(Exception):
    def __init__(self, status: int, message: str, where: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.message, self.where, self.headers = status, message, where, headers


def _json(data: Any, status: int = 200) -> Response:
    # to_json_text: explained decisions hold runtime values (Decimals) that plain orjson refuses
    return Response(to_json_text(data), status_code=status, media_type="application/json")


def create_app(daemon: Daemon, *, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    app = FastAPI(title="ruledesk", version="1", description="Order events in, rules run, decisions out.",
                  docs_url=None, redoc_url=None)
    store = daemon.store
    tokens: dict[str, tuple[Token, float]] = {}  # token -> (what it may do, when it was looked up)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        body: dict[str, Any] = {"error": exc.message}
        if exc.where:
            body["at"] = exc.where
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": first.get("msg", "invalid request"), **({"at": where} if where else {})},
                            status_code=422)

    async def authorize(request: Request, scope: str) -> Token:
        return await authorize_header(request.headers.get("authorization", ""), scope)

    async def authorize_header(header: str, scope: str) -> Token:
        kind, _, value = header.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            raise ApiError(401, "authentication required: send Authorization: Bearer TOKEN",
                           headers={"WWW-Authenticate": "Bearer"})
        value = value.strip()
        cached = tokens.get(value)
        token = cached[0] if cached is not None and time.monotonic() - cached[1] < TOKEN_CACHE_SECONDS else None
        if token is None:
            try:
                token = await run_in_threadpool(store.token, value)
            except StoreError as exc:
                raise ApiError(503, f"the store is not available: {exc}") from None
            if token is None:
                tokens.pop(value, None)
                raise ApiError(401, "the token is not valid", headers={"WWW-Authenticate": "Bearer"})
            if len(tokens) >= 10_000:  # many different tokens: start again rather than grow
                tokens.clear()
            tokens[value] = (token, time.monotonic())
        if scope == "write" and token.scope != "write":
            raise ApiError(403, "this token may only read")
        return token

    def for_store(token: Token, store_name: str | None) -> str:
        if store_name is not None and store_name != token.store:
            raise ApiError(403, f"this token is for store {token.store!r}, not {store_name!r}")
        return token.store

    async def read_body(length: str | None, stream: Any) -> bytes:
        if length is not None and length.isdigit() and int(length) > max_body:
            raise ApiError(413, f"the body is larger than {max_body} bytes")
        chunks, size = [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > max_body:
                raise ApiError(413, f"the body is larger than {max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def take(items: list[Inbound]) -> list[bool]:
        try:
            return await daemon.intake.write_async(items)
        except StoreError as exc:
            daemon._store_failed("intake", exc)
            raise ApiError(503, f"the store is not available, nothing was taken: {exc}",
                           headers={"Retry-After": "1"}) from None

    @app.post("/v1/events", status_code=202, summary="Post one event or an array of events",
              responses={400: _ERROR, 401: _ERROR, 403: _ERROR, 413: _ERROR, 422: _ERROR, 503: _ERROR},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1}]}}}}})
    async def post_events(request: Request) -> Response:
        """Store the events durably (all or none), then answer 202 with their ids; an id seen
        before is acknowledged again and not stored twice (``duplicates``)."""
        status, data, headers = await events_answer(request.headers.get("authorization", ""),
                                                    request.headers.get("content-length"), request.stream())
        return Response(data, status_code=status, media_type="application/json", headers=headers)

    async def events_answer(authorization: str, length: str | None, stream: Any
                            ) -> tuple[int, bytes, dict[str, str]]:
        """POST /v1/events without the framework: (status, JSON body, headers)."""
        try:
            token = await authorize_header(authorization, "write")
            body = await read_body(length, stream)
            try:
                items = daemon.intake.prepare(parse_body(body), store=token.store)
            except IntakeError as exc:
                daemon.metrics.refused.labels(status=str(exc.status)).inc()
                raise ApiError(exc.status, exc.message, exc.where) from None
            new = await take(items)
        except ApiError as exc:
            answer: dict[str, Any] = {"error": exc.message}
            if exc.where:
                answer["at"] = exc.where
            return exc.status, orjson.dumps(answer), exc.headers or {}
        return 202, orjson.dumps({"ids": [item.id for item in items],
                                  "duplicates": [item.id for item, fresh in zip(items, new) if not fresh]}), {}

    @app.get("/v1/orders/{order_id:path}", summary="An order as ruledesk keeps it",
             responses={401: _ERROR, 403: _ERROR, 404: _ERROR})
    async def get_order(order_id: str, request: Request, store: str | None = None) -> Response:
        token = await authorize(request, "read")
        name = for_store(token, store)
        data = await run_in_threadpool(daemon.store.order, name, order_id)
        if data is None:
            raise ApiError(404, f"store {name!r} has no order {order_id!r}")
        return Response(data, media_type="application/json")

    @app.get("/v1/decisions", summary="An order's decisions, oldest first (section 8 objects)",
             responses={401: _ERROR, 403: _ERROR})
    async def get_decisions(request: Request, order_id: str, store: str | None = None,
                            explain: bool = False) -> Response:
        """With ``explain=true`` each decision has ``explain``: every rule of its event, fired or
        not, with the clause that decided it and the values it compared."""
        token = await authorize(request, "read")
        name = for_store(token, store)
        bodies = await run_in_threadpool(daemon.store.decisions, name, order_id)
        if explain:
            return _json(await run_in_threadpool(lambda: [daemon.explained(text) for text in bodies]))
        decisions = [orjson.loads(text) for text in bodies]
        for decision in decisions:
            decision.pop("why", None)
        return _json(decisions)

    @app.post("/v1/orders/{order_id:path}/buttons/{label:path}", status_code=202, summary="Press a rule button for an order",
              responses={401: _ERROR, 403: _ERROR, 404: _ERROR, 422: _ERROR})
    async def press(order_id: str, label: str, request: Request, store: str | None = None,
                    id: str | None = None) -> Response:
        """Queue the rules of ``when button "label"`` for the order (in order with its other events)."""
        token = await authorize(request, "write")
        name = for_store(token, store)
        ruleset = daemon.engine().ruleset
        plan = ruleset.plan(button_key(label))
        if plan is None:
            labels = sorted({r.trigger.label for r in ruleset.rules if hasattr(r.trigger, "label")})
            near = closest(label, labels)
            raise ApiError(422, f"no enabled rule has button {label!r}"
                           + (f" (did you mean {near[0]!r}?)" if near else ""))
        if await run_in_threadpool(daemon.store.order, name, order_id) is None:
            raise ApiError(404, f"store {name!r} has no order {order_id!r}")
        label = plan.rules[0].trigger.label
        press = button_press(name, order_id, label, daemon.wall(), event_id=id)
        new = await take([press])
        return _json({"ids": [press.id], "duplicates": [] if new[0] else [press.id]}, 202)

    @app.post("/v1/events/{event_id:path}/replay", status_code=202, summary="Run a stored event again",
              responses={401: _ERROR, 403: _ERROR, 404: _ERROR})
    async def replay(event_id: str, request: Request) -> Response:
        """Queue a copy of a stored event under a new id (``ID/replay/N``): it runs on the order as
        the store has it now (an "Order is Imported" copy re-imports the order it carried), and its
        jobs are new jobs (their keys derive from the new id)."""
        token = await authorize(request, "write")
        stored = await run_in_threadpool(daemon.store.event, event_id)
        if stored is None or stored.store != token.store:
            raise ApiError(404, f"no event {event_id!r} in store {token.store!r}")
        for number in range(1, 10_000):
            copy_id = f"{event_id}/replay/{number}"
            if await run_in_threadpool(daemon.store.event, copy_id) is None:
                break
        body = orjson.loads(stored.body)
        body["id"] = copy_id
        new = await take([Inbound(copy_id, stored.store, stored.order_id, stored.name, to_json_text(body),
                                  kind=stored.kind, source="replay")])
        return _json({"ids": [copy_id], "duplicates": [] if new[0] else [copy_id]}, 202)

    @app.post("/v1/callbacks/{integration}/{store_name}", status_code=202,
              summary="A service calls back (podOS: an order shipped); authenticated by the integration",
              responses={400: _ERROR, 401: _ERROR, 404: _ERROR, 413: _ERROR, 422: _ERROR, 503: _ERROR})
    async def service_callback(integration: str, store_name: str, request: Request) -> Response:
        """Queue the jobs the integration's callback makes of the request (podOS: a shipment to add,
        its signature checked against the store's podOS token).  The same callback twice queues once."""
        handle = CALLBACKS.get(integration)
        if handle is None:
            raise ApiError(404, f"no integration {integration!r} takes callbacks")
        try:
            settings = daemon.engine().store(store_name)
        except EventError as exc:
            raise ApiError(404, str(exc)) from None
        body = await read_body(request.headers.get("content-length"), request.stream())
        headers = {k.lower(): v for k, v in request.headers.items()}

        def queue() -> tuple[list[Any], list[bool]]:
            exists = lambda order_id: store.order(store_name, order_id) is not None  # noqa: E731
            jobs = handle(settings, headers, body, exists)
            return jobs, store.add_jobs([job_row(job) for job in jobs], daemon.wall())

        try:
            jobs, new = await run_in_threadpool(queue)
        except CallbackError as exc:
            raise ApiError(exc.status, exc.message) from None
        except StoreError as exc:
            raise ApiError(503, f"the store is not available, nothing was taken: {exc}",
                           headers={"Retry-After": "1"}) from None
        return _json({"jobs": [job.key for job in jobs],
                      "duplicates": [job.key for job, fresh in zip(jobs, new) if not fresh]}, 202)

    @app.get("/healthz", summary="The daemon is alive")
    async def healthz() -> Response:
        return _json({"ok": True})

    @app.get("/readyz", summary="The store answers and a ruleset is active", responses={503: {}})
    async def readyz() -> Response:
        ok, report = await run_in_threadpool(daemon.readiness)
        report["ok"] = ok
        return _json(report, 200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        data = await run_in_threadpool(daemon.metrics.render)
        return Response(data, media_type="text/plain; version=0.0.4")

    app.state.daemon = daemon
    return FastEvents(app, events_answer)


class FastEvents:
    """The API with ``POST /v1/events`` answered straight on ASGI (the framework's routing,
    dependency solving and middleware cost as much as the rest of an event's intake); the same
    handler serves it through FastAPI too, which documents it in /openapi.json.  Everything else
    goes to the FastAPI app, whose attributes this object passes on."""

    def __init__(self, app: FastAPI, answer: Any) -> None:
        self.app = app
        self.answer = answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/events" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        authorization, length = "", None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")

        async def chunks():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError("the client went away")
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        status, data, headers = await self.answer(authorization, length, chunks())
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        raw.extend((key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items())
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": data})
