"""Hostile inputs to the podOS integration, over real HTTP on 127.0.0.1: forged and malformed shipment
callbacks against a real `ruledesk serve`, and a podOS that answers badly (non-JSON, no id, arrays, absurd
Retry-After, dropped connections, redirects) to the client and to the submission and poll jobs.

Every refusal of a callback is a 4xx with a JSON {"error": ...}, never a 500 and never the token; every
hostile podOS answer ends a job in a Retry or in a failure that carries its failure event, never in an
exception out of the handler (the runner would turn that into a bare failure: no event, no rule runs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from pydantic import SecretStr

from support import ROOT, Serve, create_token

from ruledesk.actions.podos import handlers
from ruledesk.actions.podos.client import PodosClient, PodosError
from ruledesk.actions.podos.events import GENERAL_ERROR
from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine.model.jobs import Done, Failed, Job, JobContext, Retry
from ruledesk.engine.model.order import parse_order
from ruledesk.engine.model.settings import PodosSettings, StoreSettings

TOKEN = "tok-HOSTILE-5be1d2-DO-NOT-LEAK"
OTHER_TOKEN = "tok-OTHER-99aa01-ALSO-SECRET"
PROJECT = "hostile-prints"
STORE = "Acme Prints"
NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)


# ---- a hostile podOS: a raw HTTP server on 127.0.0.1 that answers whatever a test scripts -------------------


class Hostile:
    """A TCP server speaking just enough HTTP/1.1: each request (read in full) is given to ``respond``,
    which returns the raw bytes to write back, or None to close the connection without a word."""

    def __init__(self, respond: Callable[[str, str, dict[str, str], bytes], bytes | None]) -> None:
        self.respond = respond
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        hostile = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline(65536)
                    if not line or not line.strip():
                        return
                    method, target, _ = line.decode("latin-1").split(" ", 2)
                    headers: dict[str, str] = {}
                    while True:
                        header = self.rfile.readline(65536)
                        if header in (b"\r\n", b"\n", b""):
                            break
                        name, _, value = header.decode("latin-1").partition(":")
                        headers[name.strip().lower()] = value.strip()
                    body = self.rfile.read(int(headers.get("content-length", "0") or 0))
                    hostile.requests.append((method, target, headers, body))
                    answer = hostile.respond(method, target, headers, body)
                    if answer is None:
                        return
                    close = isinstance(answer, tuple)
                    if close:
                        answer = answer[0]
                    self.wfile.write(answer)
                    self.wfile.flush()
                    if close or b"connection: close" in answer.lower():
                        return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Hostile":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def http(status: int, body: bytes | str = b"", *, reason: str = "X", headers: dict[str, str] | None = None,
         content_type: str = "application/json", length: int | None = None) -> bytes:
    body = body.encode() if isinstance(body, str) else body
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body) if length is None else length}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def always(answer: bytes | None) -> Callable[..., bytes | None]:
    return lambda method, path, headers, body: answer


def client(url: str, **kw: Any) -> PodosClient:
    options = {"timeout": 3.0, "retries": 0, "sleep": lambda s: None}
    options.update(kw)
    return PodosClient(url, PROJECT, TOKEN, **options)


def no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and TOKEN[:12] not in text, text


# ---- the client against hostile answers -------------------------------------------------------------------


@pytest.mark.parametrize("answer, status", [
    (http(200, "<html>hello</html>", content_type="text/html"), 200),
    (http(201, "not json at all"), 201),
    (http(200, "[1, 2, 3]"), 200),
    (http(201, '"a string"'), 201),
    (http(200, b"\xff\xfe\x00garbage"), 200),
    (http(204), 204),
])
def test_a_2xx_without_a_json_object_is_a_final_bad_response(answer, status) -> None:
    with Hostile(always(answer)) as pod, client(pod.url, retries=2) as podos:
        with pytest.raises(PodosError) as caught:
            podos.submit({"order_desk_order_id": "1"}, "key-1")
    assert caught.value.status == status and caught.value.code == "bad_response"
    assert caught.value.transient is False
    assert len(pod.requests) == 1  # a 2xx is never retried: the order may exist now
    no_token(str(caught.value), repr(caught.value))


def test_a_redirect_is_a_refusal_that_is_not_followed() -> None:
    """A 3xx is not followed (the token would go wherever Location says) and is not retried."""
    with Hostile(always(http(302, "", reason="Found", headers={"Location": "http://127.0.0.1:9/steal"}))) as pod, \
            client(pod.url, retries=2) as podos:
        with pytest.raises(PodosError) as caught:
            podos.submit({"order_desk_order_id": "1"}, "key-1")
    assert caught.value.status == 302 and not caught.value.transient
    assert len(pod.requests) == 1
    no_token(str(caught.value), repr(caught.value))


def test_a_connection_dropped_mid_answer_is_transient_and_retried() -> None:
    cut = http(201, '{"id": "pod-1", "created": true, "status": "rec', length=500)  # promises 500 bytes
    with Hostile(always((cut, "close"))) as pod, client(pod.url, retries=2) as podos:
        with pytest.raises(PodosError) as caught:
            podos.order("pod-1")
    assert caught.value.transient and caught.value.code == "connection_error"
    assert len(pod.requests) == 3
    no_token(str(caught.value), repr(caught.value))


def test_a_connection_closed_without_an_answer_is_transient() -> None:
    with Hostile(always(None)) as pod, client(pod.url, retries=1) as podos:
        with pytest.raises(PodosError) as caught:
            podos.submit({"order_desk_order_id": "1"}, "key-1")
    assert caught.value.transient and caught.value.status is None
    assert len(pod.requests) == 2


@pytest.mark.parametrize("value, expected", [
    ("-5", 0.0), ("soon", None), ("", None), ("  ", None), ("nan", (None, 0.0)), ("-inf", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_a_negative_or_garbage_retry_after_is_read_as_no_wait_or_none(value, expected) -> None:
    answer = http(503, '{"error": "unavailable", "message": "later"}', headers={"Retry-After": value} if value.strip()
                  else {})
    with Hostile(always(answer)) as pod, client(pod.url) as podos:
        with pytest.raises(PodosError) as caught:
            podos.products()
    assert caught.value.transient
    assert caught.value.retry_after in (expected if isinstance(expected, tuple) else (expected,))


@pytest.mark.parametrize("value", ["1e12", "99999999999999", "1e400", "inf"])
def test_an_enormous_retry_after_is_not_waited_for_by_the_client(value) -> None:
    waits: list[float] = []
    answer = http(429, '{"error": "rate_limited", "message": "slow down"}', headers={"Retry-After": value})
    with Hostile(always(answer)) as pod, client(pod.url, retries=3, sleep=waits.append) as podos:
        started = time.monotonic()
        with pytest.raises(PodosError) as caught:
            podos.products()
    assert waits == [] and time.monotonic() - started < 5
    assert caught.value.transient and caught.value.status == 429
    assert len(pod.requests) == 1


def test_a_2xx_look_up_without_its_list_is_a_podos_error_not_a_key_error() -> None:
    """A podOS that answers 200 {} to a look-up: the client's callers (the CLI, the jobs) only catch PodosError."""
    with Hostile(always(http(200, "{}"))) as pod, client(pod.url) as podos:
        for call in (podos.products, podos.variants, podos.designs, podos.mail_classes,
                     lambda: podos.find("1001")):
            with pytest.raises(PodosError):
                call()


def test_the_token_is_starred_out_even_where_an_error_snippet_cuts_it() -> None:
    """podOS quoting the request back in a non-JSON error: the 200-character snippet must not keep a piece of
    the token either (the scrub runs on the whole text, before it is cut)."""
    for offset in range(150, 180, 3):  # the token starts 23 characters later: 173..200, cut by the snippet
        text = "x" * offset + f" Authorization: Bearer {TOKEN} was refused"
        with Hostile(always(http(400, text, content_type="text/plain"))) as pod, client(pod.url) as podos:
            with pytest.raises(PodosError) as caught:
                podos.products()
        shown = str(caught.value) + repr(caught.value)
        assert TOKEN[:10] not in shown, (offset, shown[-60:])


def test_a_token_echoed_in_every_error_field_is_starred_out() -> None:
    body = json.dumps({"error": f"bad-{TOKEN}", "message": f"token {TOKEN} refused", "skus": [TOKEN, "A-1"]})
    with Hostile(always(http(422, body))) as pod, client(pod.url) as podos:
        with pytest.raises(PodosError) as caught:
            podos.submit({"order_desk_order_id": "1"}, "k")
    no_token(str(caught.value), repr(caught.value), repr(caught.value.skus), caught.value.code, repr(caught.value.args))


# ---- the submission and poll jobs against hostile answers --------------------------------------------------


def store_settings(url: str, **podos: Any) -> StoreSettings:
    return StoreSettings(name=STORE, id="10001", podos=PodosSettings(
        project=PROJECT, token=SecretStr(TOKEN), url=url, retries=0, timeout=3, poll_interval=60,
        after_import_folder="Submitted to podOS", **podos))


def example_order(order_id: str = "1003") -> dict[str, Any]:
    for line in (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines():
        order = json.loads(line)
        if order.get("id") == order_id:
            return parse_order(order)  # as the runners give it to a handler ([] maps read as {})
    raise KeyError(order_id)


def run_job(kind: str, url: str, *, order: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
            attempt: int = 1, max_attempts: int = 5):
    settings = store_settings(url)
    podos = PodosClient.from_settings(settings.podos, sleep=lambda s: None)
    order = order or example_order()
    job = Job(kind, "job-hostile", "Submit Order to podOS", "a rule", "ev-1", order["id"], STORE, params or {})
    ctx = JobContext(order, settings, {"podos": lambda s: podos}, lambda: NOW, attempt, max_attempts)
    try:
        fn = {handlers.SEND: handlers.send, handlers.POLL: handlers.poll}[kind]
        return fn(job, ctx)  # an exception here is the defect: it must not escape the handler
    finally:
        podos.close()


def assert_general_error_or_retry(outcome: Any) -> None:
    assert isinstance(outcome, (Retry, Failed)), outcome
    if isinstance(outcome, Failed):
        assert [e.name for e in outcome.events] == [GENERAL_ERROR], outcome
        assert outcome.events[0].payload["error"] and len(outcome.events[0].payload["error"]) < 500
        no_token(outcome.error, json.dumps(outcome.events[0].payload))
    else:
        no_token(outcome.error)


@pytest.mark.parametrize("answer", [
    http(200, "not json"),
    http(201, "[{\"id\": \"pod-1\"}]"),
    http(302, "", headers={"Location": "http://127.0.0.1:9/"}),
    http(400, "<html>bad gateway of sorts</html>", content_type="text/html"),
    http(418, "", reason="I'm a teapot"),
])
def test_a_submission_answered_badly_fails_with_a_general_error(answer) -> None:
    with Hostile(always(answer)) as pod:
        outcome = run_job(handlers.SEND, pod.url)
    assert isinstance(outcome, Failed)
    assert_general_error_or_retry(outcome)


def test_a_201_without_an_id_is_not_taken_for_a_submitted_order() -> None:
    """podOS says Created but names no order: there is no podOS order id to record or poll (recording
    "None" would poll /v1/orders/None for 30 days); the submission must fail with a readable reason."""
    with Hostile(always(http(201, '{"order_desk_order_id": "1003", "status": "received", "created": true}'))) as pod:
        outcome = run_job(handlers.SEND, pod.url)
    assert isinstance(outcome, Failed), outcome
    assert_general_error_or_retry(outcome)


@pytest.mark.parametrize("podos_id", [None, "", 17, {"x": 1}, ["pod-1"]])
def test_a_201_whose_id_is_not_a_string_is_not_taken_either(podos_id) -> None:
    answer = http(201, json.dumps({"id": podos_id, "order_desk_order_id": "1003", "created": True}))
    with Hostile(always(answer)) as pod:
        outcome = run_job(handlers.SEND, pod.url)
    if isinstance(outcome, Done):  # an integer id could be accepted as its text; nothing else
        assert podos_id == 17 and outcome.detail["podos_order_id"] == "17", outcome
    else:
        assert_general_error_or_retry(outcome)


@pytest.mark.parametrize("value", ["1e12", "99999999999999", "1e400", "inf"])
def test_an_enormous_retry_after_does_not_crash_the_submission_job(value) -> None:
    """ctx.now() + timedelta(seconds=retry_after) overflows for these: the handler must still answer a
    Retry (capped) or a General Error, not raise OverflowError."""
    answer = http(503, '{"error": "unavailable", "message": "maintenance"}', headers={"Retry-After": value})
    with Hostile(always(answer)) as pod:
        outcome = run_job(handlers.SEND, pod.url)
    assert_general_error_or_retry(outcome)


@pytest.mark.parametrize("value", ["-5", "soon", "0.2", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_small_negative_or_garbage_retry_after_is_a_prompt_retry(value) -> None:
    answer = http(429, '{"error": "rate_limited", "message": "slow"}', headers={"Retry-After": value})
    with Hostile(always(answer)) as pod:
        outcome = run_job(handlers.SEND, pod.url)
    assert isinstance(outcome, Retry), outcome
    assert NOW <= outcome.at <= NOW + dt.timedelta(seconds=handlers.RETRY_BASE + 1)
    no_token(outcome.error)


def test_a_retry_after_on_the_final_attempt_is_a_general_error() -> None:
    answer = http(503, '{"error": "unavailable", "message": "down"}', headers={"Retry-After": "1e12"})
    with Hostile(always(answer)) as pod:
        outcome = run_job(handlers.SEND, pod.url, attempt=5, max_attempts=5)
    assert isinstance(outcome, Failed)
    assert_general_error_or_retry(outcome)
    assert "5 attempts" in outcome.events[0].payload["error"]


def test_a_dropped_connection_on_submission_is_a_retry_then_a_general_error() -> None:
    with Hostile(always(None)) as pod:
        first = run_job(handlers.SEND, pod.url)
        last = run_job(handlers.SEND, pod.url, attempt=5)
    assert isinstance(first, Retry)
    assert isinstance(last, Failed)
    assert_general_error_or_retry(last)


def test_variants_answered_without_a_list_fail_the_submission_with_a_general_error() -> None:
    """Order 1001 has an item by podos_gfn_product_id: resolving it reads /v1/variants; a 200 {} there
    must not raise KeyError out of the handler."""
    def respond(method, path, headers, body):
        if path.startswith("/v1/variants"):
            return http(200, '{"unexpected": true}')
        return http(201, '{"id": "pod-9", "created": true}')

    with Hostile(respond) as pod:
        outcome = run_job(handlers.SEND, pod.url, order=example_order("1001"))
    assert_general_error_or_retry(outcome)


@pytest.mark.parametrize("status_body", [
    {"status": "shipped", "shipments": "9400100000000000000001"},
    {"status": "shipped", "shipments": ["9400100000000000000001"]},
    {"status": "shipped", "shipments": [None, 7]},
    {"status": "shipped", "shipments": [{"tracking_number": 9400100000000000000001, "carrier": "USPS"}]},
    {"status": "shipped", "shipments": [{"tracking_number": {"n": 1}}]},
    {"status": ["shipped"], "shipments": []},
])
def test_a_poll_answered_with_malformed_shipments_does_not_crash(status_body) -> None:
    """The status endpoint's shipments are podOS's word: a string, non-objects or a numeric tracking number
    must not raise out of podos.poll (the callback path already converts and filters them)."""
    with Hostile(always(http(200, json.dumps({"id": "pod-1", **status_body})))) as pod:
        outcome = run_job(handlers.POLL, pod.url, params={"podos_order_id": "pod-1", "poll": 1,
                                                          "until": (NOW + dt.timedelta(days=1)).isoformat()})
    assert isinstance(outcome, (Done, Retry, Failed)), outcome


@pytest.mark.parametrize("answer", [http(200, "[]"), http(200, "nope"), http(301, "", headers={"Location": "/x"})])
def test_a_poll_answered_badly_fails_or_polls_again(answer) -> None:
    with Hostile(always(answer)) as pod:
        outcome = run_job(handlers.POLL, pod.url, params={"podos_order_id": "pod-1", "poll": 1,
                                                          "until": (NOW + dt.timedelta(days=1)).isoformat()})
    assert isinstance(outcome, (Done, Retry, Failed))
    no_token(getattr(outcome, "error", "") or "")


# ---- hostile shipment callbacks against a real daemon --------------------------------------------------------


def sign(body: bytes, token: str = TOKEN) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


MAX_BODY = 20_000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """`ruledesk serve` with three stores: Acme Prints (podOS, TOKEN), Beta (podOS, OTHER_TOKEN) and Plain (no
    podOS); podOS is a simulator that does not ship on its own.  Order H-1 is imported into Acme Prints."""
    work = tmp_path_factory.mktemp("hostile-daemon")
    (work / "acme-token").write_text(TOKEN + "\n")
    (work / "beta-token").write_text(OTHER_TOKEN + "\n")
    with Simulator(token=TOKEN, port=0) as sim:
        (work / "ruledesk.yaml").write_text(
            "stores:\n"
            f"  - name: {STORE}\n    id: '10001'\n    podos:\n      project: {PROJECT}\n"
            f"      token: file:{work / 'acme-token'}\n      url: {sim.url}\n      retries: 0\n"
            "      after_shipment_folder: Shipped\n"
            "  - name: Beta\n    id: '10002'\n    podos:\n      project: beta\n"
            f"      token: file:{work / 'beta-token'}\n      url: {sim.url}\n      retries: 0\n"
            "  - name: Plain\n    id: '10003'\n", encoding="utf-8")
        db = f"sqlite:///{work}/hostile.db"
        serve = Serve(work, db, ROOT / "rules.d", "--config", str(work / "ruledesk.yaml"),
                      "--max-body", str(MAX_BODY)).start()
        try:
            token = create_token(db, store=STORE, cwd=work)
            plain = create_token(db, store="Plain", cwd=work)
            order = {"id": "H-1", "folder": "New", "email": "h@example.com", "shipping_method": "USPS",
                     "order_items": [{"id": "1", "name": "Plain mug", "code": "MUG-PLAIN", "price": "5.00",
                                      "quantity": "1"}], "order_shipments": []}
            for who, ids in ((token, ("H-1", "H-2")), (plain, ("P-1",))):
                for order_id in ids:
                    answer = httpx.post(f"{serve.url}/v1/events", json={**order, "id": order_id},
                                        headers={"Authorization": f"Bearer {who}"}, timeout=10)
                    assert answer.status_code == 202, answer.text
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = [httpx.get(f"{serve.url}/v1/orders/{o}", headers={"Authorization": f"Bearer {t}"}, timeout=10)
                       for o, t in (("H-1", token), ("H-2", token), ("P-1", plain))]
                if all(g.status_code == 200 for g in got):
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"the orders were not imported:\n{serve.stderr()}")
            serve.read_token = token
            yield serve
        finally:
            serve.stop()
            leaked = [line for line in serve.lines if TOKEN in line or OTHER_TOKEN in line]
            assert not leaked, leaked


def callback_body(order_id: str = "H-1", shipments: Any = None, **order: Any) -> bytes:
    if shipments is None:
        shipments = [{"tracking_number": "9400100000000000000001", "carrier": "USPS", "method": "Priority Mail",
                      "shipped_at": "2026-12-02T11:00:00Z"}]
    return json.dumps({"event": "order.shipped", "order": {"id": "pod-000001", "order_desk_order_id": order_id,
                                                           "status": "shipped", "shipments": shipments,
                                                           **order}}).encode()


def post_callback(daemon: Serve, body: bytes, *, store: str = STORE, signature: str | None = "sign",
                  token: str = TOKEN, headers: dict[str, str] | None = None) -> httpx.Response:
    sent = {"Content-Type": "application/json", "X-Podos-Project": PROJECT, **(headers or {})}
    if signature == "sign":
        sent["X-Podos-Signature"] = sign(body, token)
    elif signature is not None:
        sent["X-Podos-Signature"] = signature
    from urllib.parse import quote
    return httpx.post(f"{daemon.url}/v1/callbacks/podos/{quote(store, safe='')}", content=body, headers=sent,
                      timeout=15)


def assert_refused(answer: httpx.Response, status: int | tuple[int, ...]) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in statuses, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    data = answer.json()
    assert isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"], data
    no_token(answer.text, str(answer.headers))
    assert OTHER_TOKEN not in answer.text


def decisions(daemon: Serve, order_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{daemon.url}/v1/decisions", params={"order_id": order_id},
                       headers={"Authorization": f"Bearer {daemon.read_token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_callback_without_a_signature_is_401(daemon) -> None:
    assert_refused(post_callback(daemon, callback_body(), signature=None), 401)


@pytest.mark.parametrize("signature", [
    "sha256=" + "0" * 64, "sha256=", "", "garbage", "sha1=" + "0" * 40, ("sha256=" + "é" * 10).encode("latin-1"),
    ("sha256=" + "é" * 10).encode("utf-8"), "sha256=" + "A" * 64, sign(b"x"), sign(b"x") + ",sha256=" + "0" * 64,
])
def test_a_callback_with_a_wrong_signature_is_401(daemon, signature) -> None:
    assert_refused(post_callback(daemon, callback_body(), signature=signature), 401)


def test_the_signature_of_another_body_is_401(daemon) -> None:
    other = callback_body(shipments=[{"tracking_number": "1Z999"}])
    assert_refused(post_callback(daemon, callback_body(), signature=sign(other)), 401)


def test_an_uppercase_hex_signature_of_the_right_body(daemon) -> None:
    """Hex case is not part of the HMAC: either accept it or refuse it with 401, never a 500."""
    body = callback_body(order_id="H-2", shipments=[])
    answer = post_callback(daemon, body, signature="sha256=" + sign(body)[7:].upper())
    assert answer.status_code in (202, 401), answer.text


def test_a_signature_keyed_with_another_stores_token_is_401(daemon) -> None:
    assert_refused(post_callback(daemon, callback_body(), token=OTHER_TOKEN), 401)
    # and Beta's own signature does not open Acme's orders through Beta's URL
    assert_refused(post_callback(daemon, callback_body(), store="Beta", token=OTHER_TOKEN), 404)


def test_a_callback_for_an_unknown_store_is_404(daemon) -> None:
    assert_refused(post_callback(daemon, callback_body(), store="No Such Store"), 404)
    assert_refused(post_callback(daemon, callback_body(), store="../" + STORE), 404)


def test_a_callback_for_an_unknown_integration_is_404(daemon) -> None:
    answer = httpx.post(f"{daemon.url}/v1/callbacks/nope/{STORE}", content=callback_body(), timeout=10)
    assert_refused(answer, 404)


def test_a_callback_for_a_store_without_podos_is_refused(daemon) -> None:
    assert_refused(post_callback(daemon, callback_body(order_id="P-1"), store="Plain"), (401, 404))


@pytest.mark.parametrize("body", [b"not json", b"", b"\xff\xfe", b"{", b"{\"order\": }", b"\x00" * 10])
def test_a_signed_body_that_is_not_json_is_400(daemon, body) -> None:
    assert_refused(post_callback(daemon, body), 400)


@pytest.mark.parametrize("body", [b"[]", b"[{\"order\": {}}]", b"\"order\"", b"42", b"null", b"true",
                                  b"{\"order\": []}", b"{\"order\": \"H-1\"}", b"{}"])
def test_signed_json_that_is_not_a_callback_object_is_refused(daemon, body) -> None:
    assert_refused(post_callback(daemon, body), (400, 422))


@pytest.mark.parametrize("order_id", [None, "", 0, [], {}])
def test_a_callback_without_an_order_desk_order_id_is_refused(daemon, order_id) -> None:
    body = json.dumps({"event": "order.shipped", "order": {"id": "pod-1", "order_desk_order_id": order_id,
                                                           "shipments": []}}).encode()
    assert_refused(post_callback(daemon, body), (400, 422))
    missing = json.dumps({"event": "order.shipped", "order": {"id": "pod-1", "shipments": []}}).encode()
    assert_refused(post_callback(daemon, missing), (400, 422))


def test_a_callback_for_an_order_the_store_does_not_have_is_404(daemon) -> None:
    assert_refused(post_callback(daemon, callback_body(order_id="NOPE-1")), 404)
    assert_refused(post_callback(daemon, callback_body(order_id="P-1")), 404)  # Plain's order, not Acme's


@pytest.mark.parametrize("shipments", ["9400", {"tracking_number": "9400"}, 17, True])
def test_a_callback_whose_shipments_are_not_a_list_is_refused(daemon, shipments) -> None:
    assert_refused(post_callback(daemon, callback_body(order_id="H-2", shipments=shipments)), (400, 422))


@pytest.mark.parametrize("shipments", [[{"carrier": "USPS"}], [{"tracking_number": ""}], [{"tracking_number": None}],
                                       ["9400"], [None], []])
def test_shipments_without_a_tracking_number_queue_nothing(daemon, shipments) -> None:
    answer = post_callback(daemon, callback_body(order_id="H-2", shipments=shipments))
    assert answer.status_code in (202, 400, 422), answer.text
    if answer.status_code == 202:
        assert answer.json() == {"jobs": [], "duplicates": []}
    else:
        assert_refused(answer, (400, 422))


def test_a_body_over_max_body_is_413(daemon) -> None:
    body = callback_body(padding="x" * (MAX_BODY + 10))
    assert_refused(post_callback(daemon, body), 413)


def test_a_body_over_max_body_without_content_length_is_413(daemon) -> None:
    body = callback_body(padding="x" * (MAX_BODY * 3))

    def chunks():
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    answer = httpx.post(f"{daemon.url}/v1/callbacks/podos/Acme%20Prints", content=chunks(),
                        headers={"X-Podos-Signature": sign(body), "Content-Type": "application/json"}, timeout=15)
    assert_refused(answer, 413)


def test_a_lying_content_length_is_not_a_500(daemon) -> None:
    """Content-Length says small, the body is huge: the stream limit must still answer 413 (or the server
    closes the connection), never a 500."""
    body = callback_body(padding="x" * (MAX_BODY * 2))
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/callbacks/podos/Acme%20Prints HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                     b"X-Podos-Signature: " + sign(body).encode() + b"\r\n\r\n" + body)
        reply = conn.recv(65536)
    assert not reply.startswith(b"HTTP/1.1 5"), reply[:200]


def test_the_same_valid_callback_twice_is_one_job_then_no_second_shipment(daemon) -> None:
    body = callback_body(order_id="H-1", shipments=[{"tracking_number": "TRK-HOSTILE-1", "carrier": "USPS",
                                                     "method": "Priority Mail"}])
    first = post_callback(daemon, body)
    second = post_callback(daemon, body)
    assert first.status_code == 202 and second.status_code == 202, (first.text, second.text)
    assert len(first.json()["jobs"]) == 1 and first.json()["duplicates"] == []
    assert second.json() == {"jobs": first.json()["jobs"], "duplicates": first.json()["jobs"]}
    no_token(first.text, second.text)

    def added() -> list[dict]:
        return [d for d in decisions(daemon, "H-1") if d["event"] == "Shipment is Added"
                and (d.get("event_payload") or d.get("payload") or {}).get("tracking_number", "TRK-HOSTILE-1")
                == "TRK-HOSTILE-1"]

    deadline = time.monotonic() + 30
    while not added() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(added()) == 1, decisions(daemon, "H-1")
    # the same shipment again, in a differently shaped (so differently keyed) callback: a new job that adds nothing
    again = callback_body(order_id="H-1", shipments=[{"tracking_number": "TRK-HOSTILE-1"},
                                                     {"carrier": "no number"}], note="resent")
    answer = post_callback(daemon, again)
    assert answer.status_code == 202, answer.text
    also = callback_body(order_id="H-1", shipments=[{"tracking_number": "TRK-HOSTILE-1", "carrier": "UPS"}],
                         id="pod-other")
    answer = post_callback(daemon, also)
    assert answer.status_code == 202, answer.text
    time.sleep(2)
    assert len(added()) == 1, [d["event"] for d in decisions(daemon, "H-1")]
    order = httpx.get(f"{daemon.url}/v1/orders/H-1", headers={"Authorization": f"Bearer {daemon.read_token}"},
                      timeout=10).json()
    assert [s["tracking_number"] for s in order["order_shipments"]].count("TRK-HOSTILE-1") == 1


def test_the_daemon_still_serves_after_the_hostile_callbacks(daemon) -> None:
    assert daemon.alive()
    assert httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 200
    assert not [line for line in daemon.lines if '"status": 500' in line or " 500 " in line
                or "Traceback" in line], daemon.stderr()
