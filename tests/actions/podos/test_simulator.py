"""The podOS simulator over real HTTP on 127.0.0.1: the docs/podos-api.md contract, its faults and its callbacks."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ruledesk.actions.podos.simulator import Simulator

TOKEN = "sim-token"


def order(order_id: str = "1001", **changes: Any) -> dict[str, Any]:
    body = {"order_desk_order_id": order_id, "store_id": "10001", "mail_class": "Standard",
            "ship_to": {"first_name": "Ada", "last_name": "Lovelace", "address1": "1 Main St", "city": "Springfield",
                        "state": "IL", "postal_code": "62701", "country": "US"},
            "items": [{"line": "1", "sku": "POSTER-SUNRISE-18X24", "variant_id": "pv-55012", "quantity": 1},
                      {"line": "2", "sku": "3001C-BLK-L", "gfn_variant_id": "gfn-var-20103", "quantity": 2,
                       "print_url": "https://example.com/art/2.png"},
                      {"line": "3", "sku": "MUG-11-WHITE", "quantity": 1}]}
    return {**body, **changes}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}", "X-Podos-Project": "acme"},
                      timeout=5) as http:
        yield http


class Receiver:
    """A tiny callback endpoint on 127.0.0.1 that answers each POST with the next of ``statuses`` (then 202)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 202
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status < 300:
                    receiver.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/podos/acme/shipments"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


# -- authentication -----------------------------------------------------------------------------------------

def test_a_missing_or_wrong_token_is_401_and_a_missing_project_400(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as http:
        assert http.get("/v1/designs", headers={"X-Podos-Project": "acme"}).status_code == 401
        wrong = http.get("/v1/designs", headers={"Authorization": "Bearer nope", "X-Podos-Project": "acme"})
        assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
        assert http.get("/_sim/orders").status_code == 401
        no_project = http.get("/v1/designs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert no_project.status_code == 400
        assert "X-Podos-Project" in no_project.json()["message"]


def test_orders_are_kept_per_project(client: httpx.Client) -> None:
    created = client.post("/v1/orders", json=order()).json()
    other = {"X-Podos-Project": "other"}
    assert client.get(f"/v1/orders/{created['id']}", headers=other).status_code == 404
    assert client.get("/v1/orders", params={"order_desk_order_id": "1001"}, headers=other).json() == {"orders": []}
    again = client.post("/v1/orders", json=order(), headers=other)
    assert again.status_code == 201 and again.json()["id"] != created["id"]


# -- catalogue ----------------------------------------------------------------------------------------------

def test_catalogue_look_ups_filter(client: httpx.Client) -> None:
    products = client.get("/v1/products", params={"style_code": "3001c"}).json()["products"]
    assert [p["id"] for p in products] == ["gfn-prod-1180"]
    assert len(client.get("/v1/products").json()["products"]) > 1
    variants = client.get("/v1/variants", params={"product_id": "gfn-prod-2093"}).json()["variants"]
    assert {v["product_id"] for v in variants} == {"gfn-prod-2093"}
    assert {"id": "gfn-var-20931", "product_id": "gfn-prod-2093", "sku": "18500-FGR-M",
            "options": {"Size": "M", "Color": "Forest Green"}} in variants
    designs = {d["id"] for d in client.get("/v1/designs").json()["designs"]}
    assert {"pv-55012", "pv-30077", "pv-10442", "pv-41200", "pv-41288"} <= designs and "pv-90001" not in designs
    assert client.get("/v1/shipping-methods").json() == {
        "mail_classes": ["Economy", "Standard", "Ground", "Priority", "Express", "Overnight"]}
    assert client.get("/v1/products/gfn-prod-9999").status_code == 404


def test_the_ambiguous_product_lists_two_variants_with_the_same_options(client: httpx.Client) -> None:
    variants = client.get("/v1/variants", params={"product_id": "gfn-prod-4040"}).json()["variants"]
    same = [v["id"] for v in variants if v["options"] == {"Size": "M", "Color": "Black"}]
    assert same == ["gfn-var-40401", "gfn-var-40402"] and len(variants) == 3


# -- submitting -------------------------------------------------------------------------------------------------

def test_submit_creates_an_order_with_every_item_resolved(client: httpx.Client) -> None:
    answer = client.post("/v1/orders", json=order(callback_url="http://127.0.0.1:9/x"))
    assert answer.status_code == 201
    body = answer.json()
    assert (body["id"], body["status"], body["created"], body["shipments"]) == ("pod-000001", "received", True, [])
    assert body["items"][2]["gfn_variant_id"] == "gfn-var-30071"  # found by its SKU
    shown = client.get("/v1/orders/pod-000001").json()
    assert shown == {k: v for k, v in body.items() if k != "created"}
    found = client.get("/v1/orders", params={"order_desk_order_id": "1001"}).json()["orders"]
    assert [o["id"] for o in found] == ["pod-000001"]
    assert client.get("/v1/orders/pod-000999").json()["error"] == "not_found"


def test_a_duplicate_order_id_answers_the_existing_order(sim: Simulator, client: httpx.Client) -> None:
    first = client.post("/v1/orders", json=order())
    second = client.post("/v1/orders", json=order(mail_class="Express"))
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"] and second.json()["created"] is False
    assert second.json()["mail_class"] == "Standard"  # the existing order, unchanged
    [stored] = sim.orders()
    assert stored["submissions"] == 2 and stored["project"] == "acme"
    assert client.get("/_sim/orders").json()["orders"][0]["submissions"] == 2


def test_an_idempotency_key_replays_and_conflicts(sim: Simulator, client: httpx.Client) -> None:
    key = {"Idempotency-Key": "job-1"}
    first = client.post("/v1/orders", json=order(), headers=key)
    replay = client.post("/v1/orders", json=order(), headers=key)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"] and replay.json()["created"] is False
    conflict = client.post("/v1/orders", json=order("1002"), headers=key)
    assert (conflict.status_code, conflict.json()["error"]) == (409, "idempotency_conflict")
    assert len(sim.orders()) == 1 and sim.orders()[0]["submissions"] == 2


def test_invalid_skus_are_all_reported_together(sim: Simulator, client: httpx.Client) -> None:
    sim.reject_skus(["MUG-CATNAP-11"])
    items = [{"sku": "POSTER-X", "variant_id": "pv-90001", "quantity": 1},
             {"sku": "3001C-NPK-XXXL", "gfn_variant_id": "gfn-var-29999", "quantity": 1},
             {"sku": "NOPE-1", "quantity": 1},
             {"sku": "MUG-CATNAP-11", "variant_id": "pv-30077", "quantity": 1},
             {"sku": "3001C-WHT-S", "quantity": 1}]
    answer = client.post("/v1/orders", json=order(items=items))
    assert answer.status_code == 422
    assert answer.json() == {"error": "invalid_sku", "message": "4 items match no podOS variant",
                             "skus": ["POSTER-X", "3001C-NPK-XXXL", "NOPE-1", "MUG-CATNAP-11"]}
    assert sim.orders() == []
    assert client.post("/_sim/reject-skus", json={"skus": []}).status_code == 200
    assert client.post("/v1/orders", json=order(items=items[3:])).status_code == 201


def test_an_unknown_mail_class_is_422(client: httpx.Client) -> None:
    answer = client.post("/v1/orders", json=order(mail_class="Carrier Pigeon"))
    assert (answer.status_code, answer.json()["error"]) == (422, "invalid_mail_class")


@pytest.mark.parametrize(("body", "named"), [
    (b"{not json", "JSON"),
    (b"[]", "object"),
    (json.dumps(order(order_desk_order_id=None)).encode(), "order_desk_order_id"),
    (json.dumps({k: v for k, v in order().items() if k != "mail_class"}).encode(), "mail_class"),
    (json.dumps(order(items=[])).encode(), "items"),
    (json.dumps(order(items=[{"sku": "MUG-11-WHITE", "quantity": 0}])).encode(), "items[0].quantity"),
    (json.dumps(order(items=[{"quantity": 1}])).encode(), "items[0].sku"),
    (json.dumps(order(items=[{"sku": "A", "quantity": 1, "variant_id": "pv-1", "gfn_variant_id": "g"}])).encode(),
     "at most one"),
])
def test_a_bad_body_is_400_naming_the_field(client: httpx.Client, body: bytes, named: str) -> None:
    answer = client.post("/v1/orders", content=body, headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["error"]) == (400, "bad_request")
    assert named in answer.json()["message"]


# -- faults -----------------------------------------------------------------------------------------------------

def test_a_status_fault_is_spent_after_times(client: httpx.Client) -> None:
    added = client.post("/_sim/faults", json={"status": 429, "times": 2, "retry_after": 2, "path": "/v1/designs"})
    assert added.status_code == 201
    for _ in range(2):
        limited = client.get("/v1/designs")
        assert (limited.status_code, limited.headers["Retry-After"], limited.json()["error"]) == (429, "2",
                                                                                                  "rate_limited")
    assert client.get("/v1/designs").status_code == 200
    assert client.get("/_sim/faults").json() == {"faults": []}


def test_a_fault_body_replaces_the_error_and_without_times_lasts(sim: Simulator, client: httpx.Client) -> None:
    sim.add_fault(status=503, body={"error": "unavailable", "message": "maintenance"})
    for _ in range(3):
        answer = client.get("/v1/shipping-methods")
        assert (answer.status_code, answer.json()) == (503, {"error": "unavailable", "message": "maintenance"})
    assert client.delete("/_sim/faults").status_code == 200
    assert client.get("/v1/shipping-methods").status_code == 200


def test_faults_match_method_and_path_prefix_and_never_sim_routes(sim: Simulator, client: httpx.Client) -> None:
    sim.add_fault(status=500, method="post", path="/v1/orders")
    assert client.get("/v1/orders").status_code == 200
    assert client.post("/v1/orders", json=order()).status_code == 500
    sim.clear_faults()
    created = client.post("/v1/orders", json=order()).json()["id"]
    sim.add_fault(status=502, path="/v1/orders")
    assert client.get(f"/v1/orders/{created}").status_code == 502  # a prefix
    assert client.get("/v1/designs").status_code == 200
    sim.add_fault(status=500)
    assert client.get("/_sim/orders").status_code == 200
    assert client.post(f"/_sim/orders/{created}/ship").status_code == 200


def test_a_bad_fault_is_400(client: httpx.Client) -> None:
    for fault in ({"status": 99}, {"times": 0, "status": 500}, {"colour": "red"}, {"drop": True, "hang": True}, {}):
        assert client.post("/_sim/faults", json=fault).status_code == 400, fault


def test_drop_closes_the_connection_without_an_answer(sim: Simulator, client: httpx.Client) -> None:
    sim.add_fault(drop=True, times=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get("/v1/designs")
    assert client.get("/v1/designs").status_code == 200


def test_hang_never_answers_and_stop_does_not_wait_for_it(client: httpx.Client) -> None:
    simulator = Simulator().start()
    simulator.add_fault(hang=True)
    with httpx.Client(base_url=simulator.url, headers=client.headers) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get("/v1/designs", timeout=0.3)
    started = time.monotonic()
    simulator.stop()
    assert time.monotonic() - started < 2


def test_latency_delays_then_answers(sim: Simulator, client: httpx.Client) -> None:
    sim.add_fault(latency=0.3, times=1)
    started = time.monotonic()
    assert client.get("/v1/designs").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get("/v1/designs")
    assert time.monotonic() - started < 0.3


# -- shipping and callbacks --------------------------------------------------------------------------------------

def test_ship_adds_one_shipment_per_tracking_number(sim: Simulator, client: httpx.Client) -> None:
    created = client.post("/v1/orders", json=order()).json()["id"]
    shipped = client.post(f"/_sim/orders/{created}/ship", json={"tracking_number": "1Z999", "carrier": "UPS"})
    assert shipped.status_code == 200 and shipped.json()["shipment"]["carrier"] == "UPS"
    client.post(f"/_sim/orders/{created}/ship", json={"tracking_number": "1Z999"})
    status = client.get(f"/v1/orders/{created}").json()
    assert status["status"] == "shipped" and [s["tracking_number"] for s in status["shipments"]] == ["1Z999"]
    default = sim.ship(created)
    assert default["tracking_number"] == "9400100000000000000001" and default["carrier"] == "USPS"
    assert default["method"] == "Priority Mail" and default["tracking_url"].endswith(default["tracking_number"])
    assert len(client.get(f"/v1/orders/{created}").json()["shipments"]) == 2
    assert client.post("/_sim/orders/pod-999999/ship").status_code == 404


def test_the_callback_is_signed_with_the_token(client: httpx.Client, receiver: Receiver) -> None:
    created = client.post("/v1/orders", json=order(callback_url=receiver.url)).json()["id"]
    client.post(f"/_sim/orders/{created}/ship", json={"tracking_number": "T-1"})
    assert receiver.arrived.wait(5)
    [(headers, body)] = receiver.received
    expected = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Podos-Signature"] == f"sha256={expected}" and headers["X-Podos-Project"] == "acme"
    notice = json.loads(body)
    assert notice["event"] == "order.shipped" and notice["order"]["id"] == created
    assert notice["order"]["shipments"][0]["tracking_number"] == "T-1"


def test_a_refused_callback_is_retried(sim: Simulator, client: httpx.Client) -> None:
    receiver = Receiver(statuses=[500, 503])
    try:
        created = client.post("/v1/orders", json=order(callback_url=receiver.url)).json()["id"]
        sim.ship(created)
        assert receiver.arrived.wait(5)
        assert len(receiver.received) == 3
        assert len({body for _, body in receiver.received}) == 1  # the same signed notice each time
    finally:
        receiver.close()


def test_ship_after_ships_by_itself(receiver: Receiver) -> None:
    with Simulator(ship_after=0.2, token="other-token") as simulator:
        headers = {"Authorization": "Bearer other-token", "X-Podos-Project": "acme"}
        created = httpx.post(f"{simulator.url}/v1/orders", json=order(callback_url=receiver.url),
                             headers=headers).json()["id"]
        assert receiver.arrived.wait(5)
        [stored] = simulator.orders()
        assert stored["id"] == created and stored["status"] == "shipped" and len(stored["shipments"]) == 1
        _, body = receiver.received[0]
        signature = hmac.new(b"other-token", body, hashlib.sha256).hexdigest()
        assert receiver.received[0][0]["X-Podos-Signature"] == f"sha256={signature}"


# -- the control API --------------------------------------------------------------------------------------------

def test_the_request_log_never_holds_the_token(sim: Simulator, client: httpx.Client) -> None:
    client.post("/v1/orders", json=order(), headers={"Idempotency-Key": "job-9"})
    sim.add_fault(status=503, times=1)
    client.get("/v1/designs")
    logged = client.get("/_sim/requests").json()["requests"]
    assert [(r["method"], r["path"]) for r in logged] == [("POST", "/v1/orders"), ("GET", "/v1/designs")]
    assert logged[0]["body"]["order_desk_order_id"] == "1001"
    assert logged[0]["headers"]["Idempotency-Key"] == "job-9"
    assert TOKEN not in json.dumps(logged) and TOKEN not in json.dumps(sim.requests())
    assert all("authorization" not in {k.lower() for k in r["headers"]} for r in logged)


def test_serve_prints_its_url() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from ruledesk.actions.podos.simulator import serve; serve('127.0.0.1', 0, token='t')"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("podOS simulator on http://127.0.0.1:")
        url = line.removeprefix("podOS simulator on ")
        answer = httpx.get(f"{url}/v1/shipping-methods", headers={"Authorization": "Bearer t", "X-Podos-Project": "p"})
        assert answer.status_code == 200
    finally:
        process.terminate()
        assert process.wait(5) == 0
    assert process.stdout.read() == ""  # one line, and nothing after it (never the token)
