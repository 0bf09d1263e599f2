"""A podOS stand-in on real HTTP (docs/podos-api.md plus its /_sim controls) for tests, benchmarks and demos."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import heapq
import hmac
import importlib.resources
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HANG_SECONDS = 30.0  # a hung request is let go after this, or at once when the simulator stops
CALLBACK_PAUSES = (0.1, 0.3, 0.6)  # the pauses before each of the 3 retries of a refused callback
CALLBACK_TIMEOUT = 5.0
MAX_BODY = 5 * 1024 * 1024
REQUEST_LOG_SIZE = 10_000  # newest kept: a benchmark's millions of requests must not fill memory
HIDDEN_HEADERS = {"authorization", "proxy-authorization"}
FAULT_ERRORS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 409: "idempotency_conflict",
                429: "rate_limited", 503: "unavailable"}
FAULT_FIELDS = {"status", "times", "method", "path", "retry_after", "latency", "drop", "hang", "body"}


class SimError(Exception):
    """An answer that is a flat JSON error; raised anywhere below a route so each check stays one line."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.payload = {"error": error, "message": message, **extra}


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Call:
    """One routed request: what a route needs, already parsed (no Authorization in it)."""

    project: str | None
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or 400: every podOS body is an object."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SimError(400, "bad_request", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SimError(400, "bad_request", "the body must be a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


@dataclasses.dataclass
class Fault:
    """One injected failure (POST /_sim/faults); ``times`` None means it never wears off."""

    status: int | None = None
    times: int | None = None
    method: str | None = None
    path: str | None = None
    retry_after: float | None = None
    latency: float = 0.0
    drop: bool = False
    hang: bool = False
    body: dict[str, Any] | None = None

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> Fault:
        """A fault from its JSON fields; ValueError names the first bad one (HTTP turns it into a 400)."""
        unknown = set(fields) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        fault = cls(**{k: v for k, v in fields.items() if v is not None})
        checks = [
            (fault.status is None or (isinstance(fault.status, int) and 100 <= fault.status <= 599),
             "status must be an HTTP status"),
            (fault.times is None or (isinstance(fault.times, int) and not isinstance(fault.times, bool)
                                     and fault.times >= 1), "times must be an integer >= 1"),
            (fault.method is None or isinstance(fault.method, str), "method must be a string"),
            (fault.path is None or (isinstance(fault.path, str) and fault.path.startswith("/")),
             "path must start with /"),
            (fault.retry_after is None or _is_number(fault.retry_after), "retry_after must be seconds >= 0"),
            (_is_number(fault.latency), "latency must be seconds >= 0"),
            (isinstance(fault.drop, bool) and isinstance(fault.hang, bool), "drop and hang must be booleans"),
            (fault.body is None or isinstance(fault.body, dict), "body must be a JSON object"),
            (sum([fault.status is not None, fault.drop, fault.hang]) <= 1, "at most one of status, drop, hang"),
            (fault.status is not None or fault.drop or fault.hang or fault.latency > 0,
             "a fault needs status, drop, hang or latency"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if fault.method:
            fault.method = fault.method.upper()
        return fault

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or path.startswith(self.path))

    def reply(self) -> Reply:
        """The answer of a status fault: the given body, else a flat error named after the status."""
        error = FAULT_ERRORS.get(self.status, "server_error" if self.status >= 500 else "error")
        payload = self.body if self.body is not None else {"error": error, "message": "injected fault"}
        headers = {}
        if self.retry_after is not None:
            seconds = self.retry_after
            headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
        return Reply(self.status, payload, headers)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class Catalogue:
    """The products, GFN variants and designs podOS knows, indexed the ways items name them."""

    def __init__(self, data: dict[str, Any]) -> None:
        for key in ("mail_classes", "products", "variants", "designs"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"a podOS catalogue needs a list {key!r}")
        self.mail_classes: list[str] = list(data["mail_classes"])
        self.products: list[dict[str, Any]] = data["products"]
        self.variants: list[dict[str, Any]] = data["variants"]
        self.designs: list[dict[str, Any]] = data["designs"]
        self.design_ids = {d["id"] for d in self.designs}
        self.variant_ids = {v["id"] for v in self.variants}
        # designs first: a SKU that names a finished design means the design, not its blank
        self.by_sku: dict[str, tuple[str, str]] = {}
        for field, rows in (("variant_id", self.designs), ("gfn_variant_id", self.variants)):
            for row in rows:
                self.by_sku.setdefault(row["sku"], (field, row["id"]))

    @classmethod
    def load(cls, source: str | Path | dict[str, Any] | None = None) -> Catalogue:
        """The packaged fixture by default, else a file or a dict of the same shape."""
        if isinstance(source, dict):
            return cls(copy.deepcopy(source))
        if source is None:
            text = importlib.resources.files("ruledesk.actions.podos").joinpath("catalogue.json").read_text("utf-8")
        else:
            text = Path(source).read_text(encoding="utf-8")
        return cls(json.loads(text))

    def resolve(self, item: dict[str, Any]) -> tuple[str, str] | None:
        """The (field, id) an item names: its design or GFN variant id if valid, else its SKU's; None if nothing."""
        if item.get("variant_id") is not None:
            return ("variant_id", item["variant_id"]) if item["variant_id"] in self.design_ids else None
        if item.get("gfn_variant_id") is not None:
            gfn = item["gfn_variant_id"]
            return ("gfn_variant_id", gfn) if gfn in self.variant_ids else None
        return self.by_sku.get(item["sku"])


def _validated_items(items: Any) -> list[dict[str, Any]]:
    """The items' shape (400 naming the first bad field); whether they resolve is checked later (422)."""
    if not isinstance(items, list) or not items:
        raise SimError(400, "bad_request", "items must be a non-empty list")
    for n, item in enumerate(items):
        where = f"items[{n}]"
        if not isinstance(item, dict):
            raise SimError(400, "bad_request", f"{where} must be an object")
        if not isinstance(item.get("sku"), str) or not item["sku"]:
            raise SimError(400, "bad_request", f"{where}.sku is required (a non-empty string)")
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise SimError(400, "bad_request", f"{where}.quantity is required (an integer >= 1)")
        if item.get("variant_id") is not None and item.get("gfn_variant_id") is not None:
            raise SimError(400, "bad_request", f"{where} has both variant_id and gfn_variant_id (at most one)")
        for field in ("variant_id", "gfn_variant_id", "print_url"):
            if item.get(field) is not None and not isinstance(item[field], str):
                raise SimError(400, "bad_request", f"{where}.{field} must be a string")
    return items


def _validated_order(body: dict[str, Any]) -> dict[str, Any]:
    """The order fields of a POST /v1/orders body, or 400 naming the missing or bad field."""
    order_id = body.get("order_desk_order_id")
    if not isinstance(order_id, str) or not order_id:
        raise SimError(400, "bad_request", "order_desk_order_id is required (a non-empty string)")
    if not isinstance(body.get("mail_class"), str):
        raise SimError(400, "bad_request", "mail_class is required (a string)")
    for field, kind in (("ship_to", dict), ("store_id", str), ("callback_url", str)):
        if body.get(field) is not None and not isinstance(body[field], kind):
            raise SimError(400, "bad_request", f"{field} must be a {'JSON object' if kind is dict else 'string'}")
    callback = body.get("callback_url")
    if callback is not None and urllib.parse.urlsplit(callback).scheme not in ("http", "https"):
        raise SimError(400, "bad_request", "callback_url must be an http(s) URL")
    return {"order_desk_order_id": order_id, "store_id": body.get("store_id"), "mail_class": body["mail_class"],
            "ship_to": body.get("ship_to"), "items": _validated_items(body.get("items")), "callback_url": callback}


def _public(order: dict[str, Any]) -> dict[str, Any]:
    """An order as GET /v1/orders/{id} shows it: without the simulator's bookkeeping."""
    return {k: copy.deepcopy(v) for k, v in order.items() if k not in ("project", "submissions")}


def _tracking_url(carrier: str, number: str) -> str:
    if carrier.upper() == "USPS":
        return f"https://tools.usps.com/go/TrackConfirmAction?tLabels={urllib.parse.quote(number)}"
    return f"https://track.podos.example/{urllib.parse.quote(carrier)}/{urllib.parse.quote(number)}"


@dataclasses.dataclass(frozen=True)
class Callback:
    """A shipment notice to POST once the state lock is released."""

    url: str
    project: str
    order: dict[str, Any]


class PodosState:
    """Everything the simulator remembers, behind one lock: orders, idempotency keys, faults, the request log."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.lock = threading.Lock()
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_order_desk_id: dict[tuple[str, str], str] = {}
        self.keys: dict[tuple[str, str], tuple[str, str]] = {}  # (project, key) -> (canonical body, podos id)
        self.rejected: set[str] = set()
        self.faults: list[Fault] = []
        self.log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.order_count = 0
        self.tracking_count = 0

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, spending one of its ``times``."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def submit(self, project: str, key: str | None, body: bytes) -> tuple[Reply, str | None]:
        """POST /v1/orders; also the id of a newly created order (for ship_after), else None."""
        payload = _json_object(body)
        fields = _validated_order(payload)
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        with self.lock:
            if key is not None and (project, key) in self.keys:
                seen, podos_id = self.keys[(project, key)]
                if seen != canonical:
                    raise SimError(409, "idempotency_conflict", "this Idempotency-Key was used with a different body")
                return self._again(podos_id), None
            existing = self.by_order_desk_id.get((project, fields["order_desk_order_id"]))
            if existing is not None:
                self._remember(project, key, canonical, existing)
                return self._again(existing), None
            items = self._resolved(fields["items"])
            if fields["mail_class"] not in self.catalogue.mail_classes:
                raise SimError(422, "invalid_mail_class", f"{fields['mail_class']!r} is not a podOS shipping method",
                               mail_classes=self.catalogue.mail_classes)
            order = self._create(project, {**fields, "items": items})
            self._remember(project, key, canonical, order["id"])
            return Reply(201, {**_public(order), "created": True}), order["id"]

    def _remember(self, project: str, key: str | None, canonical: str, podos_id: str) -> None:
        if key is not None:
            self.keys[(project, key)] = (canonical, podos_id)

    def _again(self, podos_id: str) -> Reply:
        order = self.orders[podos_id]
        order["submissions"] += 1
        return Reply(200, {**_public(order), "created": False})

    def _resolved(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items with the id each resolved to filled in; 422 listing every item that resolves to nothing."""
        resolved, bad = [], []
        for item in items:
            found = None if item["sku"] in self.rejected else self.catalogue.resolve(item)
            if found is None:
                bad.append(item)
            else:
                resolved.append({**item, found[0]: found[1]})
        if bad:
            skus = list(dict.fromkeys(item["sku"] for item in bad))
            raise SimError(422, "invalid_sku", f"{len(bad)} items match no podOS variant", skus=skus)
        return resolved

    def _create(self, project: str, fields: dict[str, Any]) -> dict[str, Any]:
        self.order_count += 1
        order = {"id": f"pod-{self.order_count:06d}", "project": project,
                 "order_desk_order_id": fields["order_desk_order_id"], "status": "received", **fields,
                 "created_at": _now(), "shipments": [], "submissions": 1}
        self.orders[order["id"]] = order
        self.by_order_desk_id[(project, fields["order_desk_order_id"])] = order["id"]
        return order

    def order(self, project: str | None, podos_id: str) -> dict[str, Any]:
        """The stored order, 404 if unknown or another project's."""
        order = self.orders.get(podos_id)
        if order is None or (project is not None and order["project"] != project):
            raise SimError(404, "not_found", f"no order {podos_id}")
        return order

    def ship(self, podos_id: str, project: str | None, tracking_number: str | None, carrier: str | None,
             method: str | None) -> tuple[dict[str, Any], Callback | None]:
        """Adds a shipment (none if this tracking number shipped already) and the callback it calls for."""
        with self.lock:
            order = self.order(project, podos_id)
            if tracking_number is None:
                self.tracking_count += 1
                tracking_number = f"94001{self.tracking_count:017d}"
            for shipment in order["shipments"]:
                if shipment["tracking_number"] == tracking_number:
                    return dict(shipment), None
            carrier = carrier or "USPS"
            shipment = {"tracking_number": tracking_number, "carrier": carrier, "method": method or "Priority Mail",
                        "tracking_url": _tracking_url(carrier, tracking_number), "shipped_at": _now()}
            order["shipments"].append(shipment)
            order["status"] = "shipped"
            callback = order["callback_url"] and Callback(order["callback_url"], order["project"], _public(order))
            return dict(shipment), callback or None

    def orders_of(self, project: str | None) -> list[dict[str, Any]]:
        with self.lock:
            found = [o for o in self.orders.values() if project is None or o["project"] == project]
            return [copy.deepcopy(o) for o in found]


class ShipScheduler:
    """Ships each order ``delay`` seconds after it was created (--ship-after), on one thread for all orders."""

    def __init__(self, delay: float, ship: Callable[[str], None]) -> None:
        self._delay = delay
        self._ship = ship
        self._due: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="podos-ship-after", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, podos_id: str) -> None:
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + self._delay, podos_id))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopped:
                    return
                _, podos_id = heapq.heappop(self._due)
            self._ship(podos_id)


ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), name) for method, pattern, name in [
        ("GET", r"/v1/products", "_products"),
        ("GET", r"/v1/products/(?P<id>[^/]+)", "_product"),
        ("GET", r"/v1/variants", "_variants"),
        ("GET", r"/v1/designs", "_designs"),
        ("GET", r"/v1/shipping-methods", "_shipping_methods"),
        ("POST", r"/v1/orders", "_submit"),
        ("GET", r"/v1/orders", "_find_orders"),
        ("GET", r"/v1/orders/(?P<id>[^/]+)", "_get_order"),
        ("GET", r"/_sim/faults", "_sim_faults"),
        ("POST", r"/_sim/faults", "_sim_add_fault"),
        ("DELETE", r"/_sim/faults", "_sim_clear_faults"),
        ("POST", r"/_sim/reject-skus", "_sim_reject_skus"),
        ("POST", r"/_sim/orders/(?P<id>[^/]+)/ship", "_sim_ship"),
        ("GET", r"/_sim/orders", "_sim_orders"),
        ("GET", r"/_sim/requests", "_sim_requests"),
        ("DELETE", r"/_sim/requests", "_sim_clear_requests"),
    ]
]


class Simulator:
    """podOS on 127.0.0.1 for tests: the /v1 contract, the /_sim controls, and the same controls in Python."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str = "sim-token",
                 catalogue: str | Path | dict[str, Any] | None = None, ship_after: float | None = None,
                 verbose: bool = False) -> None:
        self._host = host
        self._port = port
        self._token = token
        self.verbose = verbose
        self._state = PodosState(Catalogue.load(catalogue))
        self._scheduler = ShipScheduler(ship_after, self._ship_later) if ship_after is not None else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Serves in a background thread; returns self so ``sim = Simulator().start()`` reads naturally."""
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="podos-simulator", daemon=True)
        self._thread.start()
        if self._scheduler is not None:
            self._scheduler.start()
        return self

    def stop(self) -> None:
        """Stops serving and cuts open connections; hung requests are released, never waited for."""
        if self._server is None or self.stopping.is_set():
            return
        self.stopping.set()
        if self._scheduler is not None:
            self._scheduler.stop()
        self._server.shutdown()
        self._server.server_close()
        with self._connections_lock:
            for connection in self._connections:
                _shut(connection)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator has no URL before start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    # -- the Python controls (same effect as /_sim) ---------------------------------------------------------

    def add_fault(self, **fault: Any) -> None:
        parsed = Fault.parse(fault)
        with self._state.lock:
            self._state.faults.append(parsed)

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    def reject_skus(self, skus: list[str]) -> None:
        """Replaces the refused SKUs (an empty list refuses none again)."""
        with self._state.lock:
            self._state.rejected = set(skus)

    def ship(self, podos_id: str, *, project: str | None = None, tracking_number: str | None = None,
             carrier: str | None = None, method: str | None = None) -> dict[str, Any]:
        """Ships the order and POSTs its callback in the background; KeyError if there is no such order."""
        try:
            shipment, callback = self._state.ship(podos_id, project, tracking_number, carrier, method)
        except SimError as exc:
            raise KeyError(podos_id) from exc
        if callback is not None:
            self._send_callback(callback)
        return shipment

    def orders(self) -> list[dict[str, Any]]:
        return self._state.orders_of(None)

    def requests(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return copy.deepcopy(list(self._state.log))

    # -- callbacks ------------------------------------------------------------------------------------------

    def _ship_later(self, podos_id: str) -> None:
        if not self.stopping.is_set():
            self.ship(podos_id)

    def _send_callback(self, callback: Callback) -> None:
        threading.Thread(target=self._deliver, args=(callback,), name="podos-callback", daemon=True).start()

    def _deliver(self, callback: Callback) -> None:
        """POSTs the signed notice; a refusal or connection error is retried after each of CALLBACK_PAUSES."""
        body = json.dumps({"event": "order.shipped", "order": callback.order}).encode()
        signature = hmac.new(self._token.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Podos-Signature": f"sha256={signature}",
                   "X-Podos-Project": callback.project}
        for pause in (*CALLBACK_PAUSES, None):
            if self.stopping.is_set():
                return
            try:
                request = urllib.request.Request(callback.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT) as response:
                    if 200 <= response.status < 300:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if pause is None or self.stopping.wait(pause):
                return

    # -- HTTP -----------------------------------------------------------------------------------------------

    def record(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        """Logs a /v1 request for GET /_sim/requests, never with its Authorization header."""
        try:
            shown: Any = json.loads(body) if body else None
        except ValueError:
            shown = body.decode("utf-8", "replace")
        visible = {k: v for k, v in headers.items() if k.lower() not in HIDDEN_HEADERS}
        self._state.record({"method": method, "path": target, "headers": visible, "body": shown,
                            "received_at": _now()})

    def take_fault(self, method: str, path: str) -> Fault | None:
        return self._state.take_fault(method, path)

    def answer(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        """Routes one request after authenticating it; every refusal is a flat JSON error."""
        try:
            name, params = self._route(method, path)
            project = self._authenticate(headers, needs_project=path.startswith("/v1/"))
            found = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
            return getattr(self, name)(Call(project, params, found, headers, body))
        except SimError as exc:
            return Reply(exc.status, exc.payload)

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        allowed = []
        for route_method, pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                if route_method == method:
                    return name, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                allowed.append(route_method)
        if allowed:
            raise SimError(405, "method_not_allowed", f"{method} is not allowed on {path}; use {', '.join(allowed)}")
        raise SimError(404, "not_found", f"no route {path}")

    def _authenticate(self, headers: dict[str, str], *, needs_project: bool) -> str | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        scheme, _, given = lowered.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token.encode()):
            raise SimError(401, "unauthorized", "a missing or wrong bearer token")
        project = lowered.get("x-podos-project", "").strip() or None
        if needs_project and project is None:
            raise SimError(400, "bad_request", "the X-Podos-Project header is required")
        return project

    def _products(self, call: Call) -> Reply:
        style = call.query.get("style_code")
        found = [p for p in self._state.catalogue.products
                 if style is None or p["style_code"].casefold() == style.casefold()]
        return Reply(200, {"products": found})

    def _product(self, call: Call) -> Reply:
        for product in self._state.catalogue.products:
            if product["id"] == call.params["id"]:
                return Reply(200, product)
        raise SimError(404, "not_found", f"no product {call.params['id']}")

    def _variants(self, call: Call) -> Reply:
        product = call.query.get("product_id")
        found = [v for v in self._state.catalogue.variants if product is None or v["product_id"] == product]
        return Reply(200, {"variants": found})

    def _designs(self, call: Call) -> Reply:
        return Reply(200, {"designs": self._state.catalogue.designs})

    def _shipping_methods(self, call: Call) -> Reply:
        return Reply(200, {"mail_classes": self._state.catalogue.mail_classes})

    def _submit(self, call: Call) -> Reply:
        key = next((v for k, v in call.headers.items() if k.lower() == "idempotency-key"), None)
        reply, created = self._state.submit(call.project, key, call.body)
        if created is not None and self._scheduler is not None:
            self._scheduler.add(created)
        return reply

    def _find_orders(self, call: Call) -> Reply:
        wanted = call.query.get("order_desk_order_id")
        found = [o for o in self._state.orders_of(call.project)
                 if wanted is None or o["order_desk_order_id"] == wanted]
        return Reply(200, {"orders": [_public(o) for o in found]})

    def _get_order(self, call: Call) -> Reply:
        with self._state.lock:
            return Reply(200, _public(self._state.order(call.project, call.params["id"])))

    def _sim_faults(self, call: Call) -> Reply:
        with self._state.lock:
            return Reply(200, {"faults": [f.as_dict() for f in self._state.faults]})

    def _sim_add_fault(self, call: Call) -> Reply:
        try:
            self.add_fault(**_json_object(call.body))
        except (ValueError, TypeError) as exc:
            raise SimError(400, "bad_request", str(exc)) from exc
        return Reply(201, self._sim_faults(call).payload)

    def _sim_clear_faults(self, call: Call) -> Reply:
        self.clear_faults()
        return Reply(200, {"faults": []})

    def _sim_reject_skus(self, call: Call) -> Reply:
        skus = _json_object(call.body).get("skus")
        if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
            raise SimError(400, "bad_request", "skus must be a list of strings")
        self.reject_skus(skus)
        return Reply(200, {"skus": sorted(set(skus))})

    def _sim_ship(self, call: Call) -> Reply:
        fields = _json_object(call.body) if call.body.strip() else {}
        for field in ("tracking_number", "carrier", "method"):
            if fields.get(field) is not None and not isinstance(fields[field], str):
                raise SimError(400, "bad_request", f"{field} must be a string")
        shipment, callback = self._state.ship(call.params["id"], None, fields.get("tracking_number"),
                                              fields.get("carrier"), fields.get("method"))
        if callback is not None:
            self._send_callback(callback)
        with self._state.lock:
            order = _public(self._state.order(None, call.params["id"]))
        return Reply(200, {"shipment": shipment, "order": order})

    def _sim_orders(self, call: Call) -> Reply:
        return Reply(200, {"orders": self.orders()})

    def _sim_requests(self, call: Call) -> Reply:
        return Reply(200, {"requests": self.requests()})

    def _sim_clear_requests(self, call: Call) -> Reply:
        with self._state.lock:
            self._state.log.clear()
        return Reply(200, {"requests": []})


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a hung request
    request_queue_size = 128  # the default backlog of 5 drops connections of 50 concurrent clients
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.simulator.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive connection: reads a request, applies a /v1 fault if one matches, answers."""

    protocol_version = "HTTP/1.1"
    server_version = "podOS-simulator"
    disable_nagle_algorithm = True  # headers and body go out as two writes; no 40 ms delayed-ACK stalls
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.simulator.opened(self.connection)

    def finish(self) -> None:
        self.server.simulator.closed(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.simulator.verbose:
            super().log_message(format, *args)

    def do_any(self) -> None:
        simulator = self.server.simulator
        body = self._read_body()
        if body is None:
            return
        path, _, query = self.path.partition("?")
        headers = dict(self.headers.items())
        if path == "/v1" or path.startswith("/v1/"):
            simulator.record(self.command, self.path, headers, body)
            fault = simulator.take_fault(self.command, path)
            if fault is not None and not self._suffer(fault):
                return
        self._send(simulator.answer(self.command, path, query, headers, body))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_any

    def _read_body(self) -> bytes | None:
        """The body by Content-Length (chunked bodies are refused); None once an error was answered."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._refuse(411, "send a Content-Length; chunked bodies are not supported")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return self._refuse(400, "Content-Length is not a number")
        if length < 0 or length > MAX_BODY:
            return self._refuse(413, f"bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        self._send(Reply(status, {"error": "bad_request", "message": message}))

    def _suffer(self, fault: Fault) -> bool:
        """Applies a fault; True when the request should still be answered normally."""
        stopping = self.server.simulator.stopping
        if fault.latency and stopping.wait(fault.latency):
            fault = Fault(drop=True)
        if fault.hang:
            stopping.wait(HANG_SECONDS)
        if fault.drop or fault.hang:
            self.close_connection = True
            _shut(self.connection)
            return False
        if fault.status is not None:
            self._send(fault.reply())
            return False
        return True

    def _send(self, reply: Reply) -> None:
        data = json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def serve(host: str, port: int, *, token: str, catalogue: str | Path | dict[str, Any] | None = None,
          ship_after: float | None = None, verbose: bool = False) -> None:
    """Serves until SIGINT or SIGTERM, announcing the URL on stdout first (a parent process waits for that line)."""
    done = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: done.set())
    simulator = Simulator(host=host, port=port, token=token, catalogue=catalogue, ship_after=ship_after,
                          verbose=verbose).start()
    try:
        print(f"podOS simulator on {simulator.url}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        simulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> None:
    """``python -m ruledesk.actions.podos.simulator``; the token comes from $PODOS_SIM_TOKEN, never argv (ps shows argv)."""
    parser = argparse.ArgumentParser(prog="python -m ruledesk.actions.podos.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--catalogue", help="a catalogue JSON file (default: the packaged fixture)")
    parser.add_argument("--ship-after", type=float, help="ship every order this many seconds after it is created")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    serve(args.host, args.port, token=os.environ.get("PODOS_SIM_TOKEN", "sim-token"), catalogue=args.catalogue,
          ship_after=args.ship_after, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
