"""Post Order JSON against real HTTP receivers on 127.0.0.1 that verify the store id and the hash the
way Order Desk's published PHP sample does (form and JSON bodies); retries in virtual time; the
terminal note; dry-run previews; the API key never shown; the durable path."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ruledesk.actions import builtin_handlers
from ruledesk.actions.webhook import order_json
from ruledesk.engine import Engine
from ruledesk.engine.cli import app
from ruledesk.engine.daemon.worker import Worker
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.jobs.durable import DurableRunner
from ruledesk.engine.jobs.preview import preview_jobs
from ruledesk.engine.lang.ruleset import RulesetError
from ruledesk.engine.model.config import ConfigError, parse_config
from ruledesk.engine.run.decision import OrderRef
from ruledesk.engine.store import open_store
from ruledesk.engine.store.base import Inbound
from support import ROOT, VirtualTime, settle

STORE = "acme"
STORE_ID = "10001"
API_KEY = "od-key-9c1f4e-s3cret"
WINDOW = 7200.0

# Text a form encoder and a url-decoder both act on: a JSON text holding these verifies under the
# PHP sample's rawurldecode() only because ruledesk writes every % as \u0025.
AWKWARD = "100% cotton + %41 & a=b ünï 😀 \\%2B"


def config_text(*, store_id: str | None = STORE_ID, api_key: bool = True, webhooks: str = "") -> str:
    lines = ["stores:", f"  - name: {STORE}"]
    if store_id is not None:
        lines.append(f'    id: "{store_id}"')
    if api_key:
        lines.append("    api_key: env:WEBHOOK_TEST_KEY")
    if webhooks:
        lines.append(f"webhooks: {webhooks}")
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def key_in_the_environment(monkeypatch):
    monkeypatch.setenv("WEBHOOK_TEST_KEY", API_KEY)


# ---- a receiver that verifies like Order Desk's PHP sample ------------------------------------------


def php_sample(headers: dict[str, str], body: bytes, store_id: str, api_key: str) -> tuple[int, str, Any]:
    """Order Desk's published receiver, line for line: ``$_POST['order']`` (the form-decoded field),
    the store id header, ``hash_hmac('sha256', rawurldecode($_POST['order']), API_KEY)`` against the
    hash header, then ``json_decode($_POST['order'], 1)``.  ``unquote_to_bytes`` is rawurldecode: it
    decodes %XX and, unlike form decoding, leaves '+' alone."""
    fields = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True)
    if "order" not in fields:
        return 400, "No Data Found", None
    if headers.get("x-order-desk-store-id") != store_id:
        return 403, "Unauthorized Request", None
    posted = fields["order"][0]
    expected = hmac.new(api_key.encode(), urllib.parse.unquote_to_bytes(posted), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("x-order-desk-hash", ""), expected):
        return 403, "Unauthorized Request", None
    order = json.loads(posted)
    if not isinstance(order, dict):
        return 400, "Invalid Order Data", None
    return 200, "OK", order


def json_receiver(headers: dict[str, str], body: bytes, store_id: str, api_key: str) -> tuple[int, str, Any]:
    """The same checks for ``format: "json"``: the hash is over the raw body."""
    if headers.get("x-order-desk-store-id") != store_id:
        return 403, "Unauthorized Request", None
    expected = hmac.new(api_key.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("x-order-desk-hash", ""), expected):
        return 403, "Unauthorized Request", None
    order = json.loads(body)
    return (200, "OK", order) if isinstance(order, dict) else (400, "Invalid Order Data", None)


class Receiver:
    """A real HTTP server on 127.0.0.1 (a free port) that verifies every post and records it.

    ``answers`` are what it answers to the verified posts in turn (a status, or (status, headers,
    body)); once they are spent it answers ``then``.  ``sleep`` delays every answer (real seconds)."""

    def __init__(self, answers: list[Any] = (), then: Any = 200, *, sleep: float = 0.0,
                 store_id: str = STORE_ID, api_key: str = API_KEY) -> None:
        self.answers = list(answers)
        self.then = then
        self.sleep = sleep
        self.store_id, self.api_key = store_id, api_key
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._answer(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        verify = json_receiver if headers.get("content-type") == "application/json" else php_sample
        status, text, order = verify(headers, body, self.store_id, self.api_key)
        extra: dict[str, str] = {}
        with self._lock:
            if status == 200:
                answer = self.answers.pop(0) if self.answers else self.then
                status, extra, text = answer if isinstance(answer, tuple) else (answer, {}, f"answer {answer}")
            self.requests.append({"path": request.path, "headers": headers, "body": body, "order": order,
                                  "status": status})
        if self.sleep:
            time.sleep(self.sleep)
        try:
            request.send_response(status)
            for name, value in extra.items():
                request.send_header(name, value)
            data = text.encode()
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except OSError:  # the client gave up (a timeout)
            pass

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] in (200, 201)]

    def __enter__(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True, name="webhook receiver").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- running rules and jobs ---------------------------------------------------------------------


def rules(url: str, *params: str) -> str:
    args = ", ".join([f'url: "{url}"', *params])
    return f'''
rule "Post imported orders" {{
    when "Order is Imported"
    then "Post Order JSON"({args})
}}
rule "Tag orders whose post failed" {{
    when "Note Added"
    if event.note starts with "Post Order JSON"
    then "Tag Order"(name: "webhook failed")
}}
'''


def an_order(order_id: str = "1001") -> dict[str, Any]:
    return {"id": order_id, "email": "ann@example.com", "shipping_method": "Ground",
            "checkout_data": {"Gift Message": AWKWARD},
            "order_items": [{"id": "1", "code": "TEE-M", "name": f"Tee {AWKWARD}", "price": "12.50", "quantity": "2"}],
            "order_notes": [{"content": "called the customer", "username": "ann", "date_added": "2026-12-01 09:00:00"}]}


def imported(order: dict[str, Any]) -> dict[str, Any]:
    return {"event": "Order is Imported", "order": order, "store": STORE, "id": f"evt-{order['id']}"}


class Run:
    """The rules over one imported order and its jobs performed by a MemoryRunner in virtual time."""

    def __init__(self, rule_text: str, config: str | None = None, *, dry_run: bool = False) -> None:
        self.config = parse_config(config or config_text())
        self.clock = VirtualTime()
        self.engine = Engine.from_source(rule_text, stores=self.config.stores, config=self.config, clock=self.clock,
                                         dry_run=dry_run)
        self.runner = MemoryRunner(self.engine, builtin_handlers(), clock=self.clock, sleep=self.clock.sleep,
                                   max_wait=10 ** 6)
        self.results: list[Any] = []

    def order_imported(self, order: dict[str, Any] | None = None) -> "Run":
        result = self.engine.process(imported(order or an_order()))
        self.results.append(result)
        self.runner.submit(result)
        self.results += self.runner.run()
        return self

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [d.to_json() for r in self.results for d in r.decisions]

    def order(self, order_id: str = "1001") -> dict[str, Any]:
        return self.runner.orders[OrderRef(STORE, order_id)]

    def statuses(self) -> list[str]:
        return [run.status for run in self.runner.runs]

    def everything_shown(self) -> str:
        """Every text a user or a log could see: decisions, job outcomes and their details."""
        shown = [json.dumps(self.decisions, default=str)]
        for run in self.runner.runs:
            shown.append(repr(run.outcome))
        return "\n".join(shown)


def notes(order: dict[str, Any]) -> list[str]:
    return [note["content"] for note in order.get("order_notes") or []]


# ---- delivery and verification ------------------------------------------------------------------


def test_a_form_post_verifies_like_order_desks_php_sample():
    with Receiver() as receiver:
        run = Run(rules(receiver.url + "/orders")).order_imported()
    [post] = receiver.requests
    assert post["status"] == 200 and post["path"] == "/orders"
    headers = post["headers"]
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["x-order-desk-store-id"] == STORE_ID
    [job] = run.results[0].jobs
    assert headers["idempotency-key"] == job.key
    order = post["order"]
    assert order["id"] == "1001"
    assert order["checkout_data"]["Gift Message"] == AWKWARD  # every awkward character arrives as it was
    assert order["order_items"][0]["name"] == f"Tee {AWKWARD}"
    assert order["order_items"][0]["price"] == 12.5
    assert "order_notes" not in order  # no history unless asked
    # the older sample (no rawurldecode) verifies too: the signed text holds no %
    [field] = urllib.parse.parse_qs(post["body"].decode("ascii"))["order"]
    assert "%" not in field
    assert headers["x-order-desk-hash"] == hmac.new(API_KEY.encode(), field.encode(), hashlib.sha256).hexdigest()
    assert run.statuses() == ["done"]
    assert run.decisions[0]["actions"][0]["status"] == "scheduled"


def test_a_json_body_is_signed_over_the_raw_body_and_may_include_the_history():
    with Receiver() as receiver:
        run = Run(rules(receiver.url, 'format: "json"', "include_history: true")).order_imported()
    [post] = receiver.requests
    assert post["status"] == 200
    assert post["headers"]["content-type"] == "application/json"
    assert post["headers"]["x-order-desk-hash"] == hmac.new(API_KEY.encode(), post["body"],
                                                            hashlib.sha256).hexdigest()
    assert post["order"]["checkout_data"]["Gift Message"] == AWKWARD
    assert [n["content"] for n in post["order"]["order_notes"]] == ["called the customer"]
    assert run.statuses() == ["done"]


def test_the_php_check_refuses_a_wrong_key_or_store_id():
    """The receivers are real checks: a post signed with another key, or for another store, is refused."""
    with Receiver(api_key="another-key", then=200) as wrong_key, Receiver(store_id="99999") as wrong_store:
        Run(rules(wrong_key.url), config_text(webhooks="{retries: 0}")).order_imported()
        Run(rules(wrong_store.url), config_text(webhooks="{retries: 0}")).order_imported()
    assert [r["status"] for r in wrong_key.requests] == [403]
    assert [r["status"] for r in wrong_store.requests] == [403]


def test_the_python_receiver_of_the_docs_verifies_both_formats_and_refuses_a_forgery():
    """The snippet docs/webhooks.md gives receivers, run on what real posts carried."""
    docs = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    [snippet] = re.findall(r"```python\n(.*?)```", docs, re.S)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/webhooks.md", "exec"), namespace)
    verified_order = namespace["verified_order"]
    with Receiver() as form, Receiver() as body:
        Run(rules(form.url)).order_imported()
        Run(rules(body.url, 'format: "json"')).order_imported()
    for post in form.requests + body.requests:
        headers = {name.title(): value for name, value in post["headers"].items()}  # as a framework gives them
        assert verified_order(headers, post["body"], STORE_ID, API_KEY) == post["order"]
        with pytest.raises(PermissionError):
            verified_order(headers, post["body"].replace(b"Ground", b"Rush!!"), STORE_ID, API_KEY)
        with pytest.raises(PermissionError):
            verified_order(headers, post["body"], STORE_ID, "another-key")


def test_the_text_signed_survives_the_samples_rawurldecode():
    """Percent signs are written \\u0025: url-decoding the JSON text leaves it as it is, and a JSON reader
    reads the same characters."""
    text = order_json({"id": "1", "email": "a%41b+c%2B@example.com", "order_notes": []}, False)
    assert "%" not in text
    assert urllib.parse.unquote_to_bytes(text) == text.encode()
    assert json.loads(text) == {"id": "1", "email": "a%41b+c%2B@example.com"}


def test_an_injected_client_is_used_and_201_is_success():
    import httpx

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, text="created")

    run = Run(rules("https://hooks.example.com/orders"))
    run.runner.clients["webhook"] = httpx.Client(transport=httpx.MockTransport(answer))
    run.order_imported()
    [request] = seen
    assert request.method == "POST" and str(request.url) == "https://hooks.example.com/orders"
    assert request.headers["X-Order-Desk-Store-Id"] == STORE_ID
    assert run.statuses() == ["done"]
    assert run.runner.runs[0].outcome.detail["status"] == 201


def test_a_templated_url_is_rendered_per_order():
    with Receiver() as receiver:
        run = Run(rules(receiver.url + "/hooks/{{ order.id }}?store={{ store.name }}")).order_imported()
    assert [r["path"] for r in receiver.delivered] == ["/hooks/1001?store=acme"]
    assert run.decisions[0]["actions"][0]["params"]["url"] == receiver.url + "/hooks/1001?store=acme"


@pytest.mark.parametrize("url, params, problem", [
    ("ftp://example.com/orders", (), 'E208: the url of "Post Order JSON" is not usable: expected an http://'),
    ("http:///orders", (), 'E208: the url of "Post Order JSON" is not usable: expected an http://'),
    ("https://example.com/orders", ('format: "xml"',), "E208: bad value for parameter 'format'"),
])
def test_a_bad_literal_url_or_format_is_a_check_error(url, params, problem):
    with pytest.raises(RulesetError) as caught:
        Engine.from_source(rules(url, *params))
    assert problem in str(caught.value)


def test_a_template_that_renders_a_bad_url_fails_the_action_and_records_no_job():
    run = Run(rules("{{ order.email }}")).order_imported()
    [record] = run.decisions[0]["actions"]
    assert record["status"] == "failed" and "http" in record["error"]
    assert run.results[0].jobs == []


# ---- failures and retries -------------------------------------------------------------------------


def test_500_then_200_is_retried_and_delivered_once_with_one_idempotency_key():
    with Receiver(answers=[500]) as receiver:
        run = Run(rules(receiver.url)).order_imported()
    assert [r["status"] for r in receiver.requests] == [500, 200]
    assert len(receiver.delivered) == 1
    keys = {r["headers"]["idempotency-key"] for r in receiver.requests}
    assert keys == {run.results[0].jobs[0].key}
    assert run.statuses() == ["retry", "done"]
    first_wait = (run.runner.runs[1].at - run.runner.runs[0].at).total_seconds()
    assert 0.9 * WINDOW / 31 <= first_wait <= WINDOW / 31  # the first of 5 doubling waits over 2 hours
    assert notes(run.order()) == ["called the customer"]  # a delivered post leaves no note


def test_a_receiver_that_always_fails_gets_six_attempts_over_two_hours_then_a_note():
    with Receiver(then=(500, {}, f"boom: the key was {API_KEY}")) as receiver:
        run = Run(rules(receiver.url)).order_imported()
    assert len(receiver.requests) == 6  # 1 + 5 retries
    assert run.statuses() == ["retry"] * 5 + ["failed"]
    times = [r.at for r in run.runner.runs]
    waits = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert waits == sorted(waits)
    assert 0.9 * WINDOW <= sum(waits) <= WINDOW
    failure = run.runner.runs[-1].outcome
    assert "failed after 6 attempts: HTTP 500" in failure.error
    # the note on the order, and the "Note Added" decision the rules saw it in
    assert notes(run.order())[-1] == failure.error
    [added] = [d for d in run.decisions if d["event"] == "Note Added"]
    assert added["order"]["order_notes"][-1]["content"] == failure.error
    assert added["fired"] == ["Tag orders whose post failed"]
    assert run.order()["tag_name"] == "webhook failed"
    # the receiver quoted the key back: it is starred out everywhere
    assert "**********" in failure.error
    assert API_KEY not in run.everything_shown()


def test_a_receiver_that_times_out_is_retried_then_given_up_on():
    with Receiver(sleep=1.0) as receiver:
        started = time.monotonic()
        run = Run(rules(receiver.url), config_text(webhooks="{timeout: 0.2, retries: 2}")).order_imported()
        elapsed = time.monotonic() - started
    assert len(receiver.requests) == 3
    assert run.statuses() == ["retry", "retry", "failed"]
    assert "no answer within 0.2 s" in run.runner.runs[-1].outcome.error
    assert elapsed < 3.0  # the configured timeout, not the receiver, decides how long a post waits
    assert notes(run.order())[-1].startswith("Post Order JSON to ")


def test_a_redirect_is_not_followed_and_counts_as_a_failure():
    with Receiver() as target, Receiver(then=(302, {"Location": target.url}, "moved")) as receiver:
        run = Run(rules(receiver.url), config_text(webhooks="{retries: 1}")).order_imported()
    assert target.requests == []
    assert [r["status"] for r in receiver.requests] == [302, 302]
    assert "not followed" in run.runner.runs[-1].outcome.error


def test_retry_after_is_honoured():
    with Receiver(answers=[(429, {"Retry-After": "3000"}, "slow down")]) as receiver:
        run = Run(rules(receiver.url)).order_imported()
    assert [r["status"] for r in receiver.requests] == [429, 200]
    assert (run.runner.runs[1].at - run.runner.runs[0].at).total_seconds() == 3000


def test_a_retry_after_date_is_read_on_the_jobs_clock():
    clock = VirtualTime()
    later = email.utils.format_datetime(clock.now + dt.timedelta(seconds=4000), usegmt=True)
    with Receiver(answers=[(503, {"Retry-After": later}, "maintenance")]) as receiver:
        run = Run(rules(receiver.url)).order_imported()
    assert [r["status"] for r in receiver.requests] == [503, 200]
    assert (run.runner.runs[1].at - run.runner.runs[0].at).total_seconds() == 4000


def test_the_retries_and_window_are_configurable():
    with Receiver(then=503) as receiver:
        run = Run(rules(receiver.url), config_text(webhooks="{retries: 2, retry_window: 600}")).order_imported()
    assert len(receiver.requests) == 3
    times = [r.at for r in run.runner.runs]
    assert 0.9 * 600 <= (times[-1] - times[0]).total_seconds() <= 600


@pytest.mark.parametrize("store_id, with_key, missing", [(None, True, "id"), (STORE_ID, False, "api_key")])
def test_a_store_without_an_id_or_a_key_fails_at_once_with_a_note(store_id, with_key, missing):
    with Receiver() as receiver:
        run = Run(rules(receiver.url), config_text(store_id=store_id, api_key=with_key)).order_imported()
    assert receiver.requests == []
    assert run.statuses() == ["failed"]  # not retried: it would never work
    error = run.runner.runs[0].outcome.error
    assert "was not sent" in error and f"has no {missing}" in error
    assert notes(run.order())[-1] == error
    assert any(d["event"] == "Note Added" for d in run.decisions)


def test_a_connection_refused_is_retried():
    with Receiver() as receiver:
        url = receiver.url
    run = Run(rules(url), config_text(webhooks="{retries: 1}")).order_imported()  # nobody listens any more
    assert run.statuses() == ["retry", "failed"]
    assert "ConnectError" in run.runner.runs[-1].outcome.error


# ---- dry run ------------------------------------------------------------------------------------------


def test_a_dry_run_shows_the_request_and_sends_nothing():
    with Receiver() as receiver:
        run = Run(rules(receiver.url + "/{{ order.id }}"), dry_run=True)
        result = run.engine.process(imported(an_order()))
        preview_jobs(run.engine, result.decisions)
    assert receiver.requests == []
    [record] = result.decisions[0].actions
    assert record.status == "dry-run"
    shown = record.detail["preview"]
    assert shown["method"] == "POST" and shown["url"] == receiver.url + "/1001"
    text = shown["body"]["order"]
    assert shown["headers"]["X-Order-Desk-Hash"] == hmac.new(API_KEY.encode(), text.encode(),
                                                             hashlib.sha256).hexdigest()
    assert shown["headers"]["X-Order-Desk-Store-Id"] == STORE_ID
    assert shown["headers"]["Idempotency-Key"] == record.job.key
    assert json.loads(text)["id"] == "1001"
    assert API_KEY not in json.dumps(result.decisions[0].to_json(), default=str)


def test_a_dry_run_preview_of_a_store_without_a_key_says_why():
    run = Run(rules("http://127.0.0.1:9/x"), config_text(api_key=False), dry_run=True)
    result = run.engine.process(imported(an_order()))
    preview_jobs(run.engine, result.decisions)
    shown = result.decisions[0].actions[0].detail["preview"]
    assert shown["outcome"] == "failed" and "api_key" in shown["error"]


def test_ruledesk_run_dry_run_prints_the_preview(tmp_path):
    from typer.testing import CliRunner

    (tmp_path / "post.rules").write_text(rules("https://hooks.example.com/orders", 'format: "json"'),
                                         encoding="utf-8")
    (tmp_path / "ruledesk.yaml").write_text(config_text(), encoding="utf-8")
    (tmp_path / "orders.jsonl").write_text(json.dumps(imported(an_order())) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "--rules", str(tmp_path / "post.rules"), "--dry-run", "--format",
                                      "json", "--config", str(tmp_path / "ruledesk.yaml"),
                                      str(tmp_path / "orders.jsonl")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout.splitlines()[0])
    [record] = decision["actions"]
    assert record["status"] == "dry-run"
    preview = record["detail"]["preview"]
    assert preview["url"] == "https://hooks.example.com/orders"
    assert preview["headers"]["Content-Type"] == "application/json"
    assert json.loads(preview["body"])["id"] == "1001"
    assert API_KEY not in result.stdout


# ---- configuration --------------------------------------------------------------------------------


def test_the_webhooks_section_has_order_desks_defaults_and_refuses_a_typo():
    defaults = parse_config(config_text()).webhooks
    assert (defaults.timeout, defaults.retries, defaults.retry_window) == (30.0, 5, 7200.0)
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(webhooks="{retires: 3}"))
    assert "webhooks.retires: unknown key 'retires' (did you mean 'retries'?)" in str(caught.value)
    with pytest.raises(ConfigError):
        parse_config(config_text(webhooks="{timeout: 0}"))


# ---- the durable path ------------------------------------------------------------------------------


class Durable:
    """Worker and DurableRunner over a SQLite store, in virtual time."""

    def __init__(self, tmp_path, rule_text: str, config: str) -> None:
        self.store = open_store(f"sqlite:///{tmp_path}/webhook.db")
        self.now = [1_800_000_000.0]
        config_model = parse_config(config)
        self.engine = Engine.from_source(rule_text, stores=config_model.stores, config=config_model, clock=self.clock)
        self.worker = Worker(self.store, lambda: self.engine, name="w", wall=lambda: self.now[0])
        self.attempts: list[Any] = []
        self.runner = DurableRunner(self.store, lambda: self.engine, builtin_handlers(), name="r", clock=self.clock,
                                    on_attempt=self.attempts.append)

    def clock(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now[0], dt.timezone.utc)

    def settle(self) -> None:
        settle(self.worker, self.runner, self.store, self.now)


def test_durable_500_then_200_is_delivered_once_and_a_dead_receiver_gets_a_note(tmp_path):
    with Receiver(answers=[500]) as good, Receiver(then=500) as dead:
        d = Durable(tmp_path, rules("{% if order.id == '1001' %}" + good.url + "{% else %}" + dead.url
                                    + "{% endif %}"), config_text(webhooks="{retries: 2}"))
        for order_id in ("1001", "1002"):
            data = imported(an_order(order_id))
            d.store.enqueue([Inbound(data["id"], STORE, order_id, "Order is Imported", json.dumps(data))], d.now[0])
        d.settle()
    try:
        assert [r["status"] for r in good.requests] == [500, 200]
        assert len({r["headers"]["idempotency-key"] for r in good.requests}) == 1
        assert len(dead.requests) == 3
        by_order = {(a.job.order_id, a.status) for a in d.attempts}
        assert by_order == {("1001", "retry"), ("1001", "done"), ("1002", "retry"), ("1002", "failed")}
        delivered = json.loads(d.store.order(STORE, "1001"))
        assert notes(delivered) == ["called the customer"]
        failed = json.loads(d.store.order(STORE, "1002"))
        assert notes(failed)[-1].startswith("Post Order JSON to ") and "after 3 attempts" in notes(failed)[-1]
        assert failed["tag_name"] == "webhook failed"  # the "Note Added" rules ran on it
        decisions = [json.loads(text) for text in d.store.decisions(STORE, "1002")]
        assert any(x["event"] == "Note Added" for x in decisions)
        assert all(API_KEY not in text for text in d.store.decisions(STORE, "1002"))
    finally:
        d.store.close()
