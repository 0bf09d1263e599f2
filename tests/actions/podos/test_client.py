"""The podOS client against the real simulator over 127.0.0.1: look-ups, idempotent submits, which failures
are retried and how long it waits, and a token that shows up nowhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import socket
import time

import pytest
from pydantic import SecretStr

from ruledesk.actions.podos.client import AsyncPodosClient, PodosClient, PodosError, Submission, _retry_after
from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine.model.settings import PodosSettings

TOKEN = "sim-token"
SECRET = "s3cr3t-TOKEN-xyz"
PROJECT = "acme-prints"


def order_body(order_desk_order_id: str = "1001", **changes) -> dict:
    body = {
        "order_desk_order_id": order_desk_order_id,
        "store_id": "10001",
        "mail_class": "Standard",
        "ship_to": {"first_name": "Ada", "last_name": "Lovelace", "address1": "1 Main St", "city": "Springfield",
                    "state": "IL", "postal_code": "62701", "country": "US", "email": "ada@example.com"},
        "items": [{"line": "1", "sku": "POSTER-SUNRISE-18X24", "variant_id": "pv-55012", "quantity": 1}],
    }
    body.update(changes)
    return body


@pytest.fixture
def sim():
    with Simulator(token=TOKEN, port=0) as simulator:
        yield simulator


class Sleeps(list):
    """An injected ``sleep`` that records each wait (and waits ``real`` seconds of it, at most)."""

    def __init__(self, real: float = 0.0) -> None:
        super().__init__()
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.real:
            time.sleep(min(seconds, self.real))

    async def wait(self, seconds: float) -> None:
        self.append(seconds)
        if self.real:
            await asyncio.sleep(min(seconds, self.real))


def client(sim, token: str = TOKEN, **kw) -> PodosClient:
    kw.setdefault("sleep", Sleeps())
    return PodosClient(sim.url, PROJECT, token, **kw)


def posts(sim, path: str = "/v1/orders") -> list[dict]:
    return [r for r in sim.requests() if r["method"] == "POST" and r["path"].split("?")[0] == path]


def header(request: dict, name: str) -> str | None:
    return next((v for k, v in request["headers"].items() if k.lower() == name.lower()), None)


# ---- look-ups -----------------------------------------------------------------------------------------


def test_products_all_and_by_style_code(sim):
    settings = PodosSettings(project=PROJECT, token=SecretStr(TOKEN), url=sim.url)
    with PodosClient.from_settings(settings) as podos:
        everything = podos.products()
        assert {"id", "style_code", "name", "brand", "options"} <= set(everything[0])
        code = everything[0]["style_code"]
        filtered = podos.products(code.lower())  # exact, case-insensitive
        assert filtered == [p for p in everything if p["style_code"].lower() == code.lower()]
        assert podos.products("NO-SUCH-STYLE") == []
    request = sim.requests()[-1]
    assert header(request, "X-Podos-Project") == PROJECT


def test_variants_all_and_by_product(sim):
    with client(sim) as podos:
        everything = podos.variants()
        product_id = everything[0]["product_id"]
        mine = podos.variants(product_id)
        assert mine and mine == [v for v in everything if v["product_id"] == product_id]
        assert all(isinstance(v["options"], dict) and v["sku"] for v in mine)
        assert len(mine) < len(everything)


def test_designs_and_mail_classes(sim):
    with client(sim) as podos:
        designs = podos.designs()
        assert "pv-55012" in {d["id"] for d in designs}
        assert podos.mail_classes() == ["Economy", "Standard", "Ground", "Priority", "Express", "Overnight"]


def test_order_and_find(sim):
    with client(sim) as podos:
        assert podos.find("1001") is None
        created = podos.submit(order_body(), "job-1")
        assert podos.order(created.order["id"])["order_desk_order_id"] == "1001"
        assert podos.find("1001")["id"] == created.order["id"]
        with pytest.raises(PodosError) as refused:
            podos.order("pod-999999")
    assert (refused.value.status, refused.value.code, refused.value.transient) == (404, "not_found", False)


# ---- submissions: idempotent ----------------------------------------------------------------------------


def test_submit_creates_then_a_duplicate_answers_the_same_order(sim):
    with client(sim) as podos:
        first = podos.submit(order_body(), "job-1")
        again = podos.submit(order_body(), "job-2")  # another job, the same Order Desk order
    assert isinstance(first, Submission)
    assert first.created is True and first.order["id"].startswith("pod-")
    assert again.created is False and again.order["id"] == first.order["id"]
    [stored] = sim.orders()
    assert stored["submissions"] == 2
    assert [header(r, "Idempotency-Key") for r in posts(sim)] == ["job-1", "job-2"]


def test_a_duplicate_submission_after_a_timeout_gives_exactly_one_podos_order(sim):
    # podOS is slower than the client's patience: it creates the order, the client has given up by then and
    # retries (after a backoff long enough for podOS to finish) with the same Idempotency-Key
    sim.add_fault(latency=0.6, times=1, method="POST", path="/v1/orders")
    sleeps = Sleeps(real=1.0)
    with client(sim, timeout=0.3, backoff=0.5, rng=lambda: 1.0, sleep=sleeps) as podos:
        submission = podos.submit(order_body(), "job-1")
    assert submission.created is False
    assert sleeps == [0.5]
    [stored] = sim.orders()
    assert stored["submissions"] == 2 and stored["id"] == submission.order["id"]
    assert [header(r, "Idempotency-Key") for r in posts(sim)] == ["job-1", "job-1"]


def test_a_hung_request_is_retried_and_the_order_created_once(sim):
    sim.add_fault(hang=True, times=1, method="POST", path="/v1/orders")
    sleeps = Sleeps()
    with client(sim, timeout=0.3, sleep=sleeps, rng=lambda: 0.0) as podos:
        submission = podos.submit(order_body(), "job-1")
    assert submission.order["order_desk_order_id"] == "1001"
    assert len(sleeps) == 1
    assert len(sim.orders()) == 1
    assert len(posts(sim)) == 2


# ---- retries --------------------------------------------------------------------------------------------


def test_503_is_retried_with_full_jitter_backoff_then_succeeds(sim):
    sim.add_fault(status=503, times=2, method="POST", path="/v1/orders")
    sleeps = Sleeps()
    with client(sim, backoff=0.1, rng=lambda: 0.5, sleep=sleeps) as podos:
        submission = podos.submit(order_body(), "job-1")
    assert submission.created is True
    assert sleeps == pytest.approx([0.5 * 0.1, 0.5 * 0.2])  # rng() * min(max_backoff, backoff * 2**(n-1))
    assert [header(r, "Idempotency-Key") for r in posts(sim)] == ["job-1"] * 3
    assert len(sim.orders()) == 1


def test_backoff_is_capped_and_the_last_transient_error_raised_after_the_retries(sim):
    sim.add_fault(status=500, method="GET", path="/v1/designs")  # every time
    sleeps = Sleeps()
    with client(sim, retries=4, backoff=1.0, max_backoff=2.5, rng=lambda: 1.0, sleep=sleeps) as podos:
        with pytest.raises(PodosError) as failed:
            podos.designs()
    assert sleeps == [1.0, 2.0, 2.5, 2.5]
    assert (failed.value.status, failed.value.transient) == (500, True)
    assert str(failed.value).startswith("HTTP 500 ")
    assert len([r for r in sim.requests() if r["path"] == "/v1/designs"]) == 5


def test_429_waits_as_long_as_retry_after_says(sim):
    sim.add_fault(status=429, times=1, retry_after=1, method="GET", path="/v1/shipping-methods")
    sleeps = Sleeps()
    with client(sim, sleep=sleeps, rng=lambda: 0.0) as podos:
        assert "Standard" in podos.mail_classes()
    assert sleeps == [1.0]


def test_a_retry_after_longer_than_max_retry_after_raises_at_once_for_the_caller_to_reschedule(sim):
    sim.add_fault(status=503, times=1, retry_after=120, method="POST", path="/v1/orders")
    sleeps = Sleeps()
    with client(sim, sleep=sleeps, max_retry_after=30) as podos:
        with pytest.raises(PodosError) as failed:
            podos.submit(order_body(), "job-1")
    assert (failed.value.transient, failed.value.retry_after, failed.value.status) == (True, 120.0, 503)
    assert sleeps == []
    assert len(posts(sim)) == 1 and sim.orders() == []


def test_retry_after_is_seconds_or_an_http_date():
    later = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True)
    assert 118 <= _retry_after(later) <= 120
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date gone by: come back now
    assert (_retry_after("1"), _retry_after(" 2.5 "), _retry_after(None), _retry_after("soon")) == (1.0, 2.5, None, None)


def test_a_dropped_connection_is_retried(sim):
    sim.add_fault(drop=True, times=1, method="GET", path="/v1/shipping-methods")
    sleeps = Sleeps()
    with client(sim, sleep=sleeps, rng=lambda: 0.0) as podos:
        assert len(podos.mail_classes()) == 6
    assert sleeps == [0.0]


def test_connection_refused_is_transient_after_the_retries():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    with PodosClient(f"http://127.0.0.1:{port}", PROJECT, TOKEN, retries=2, sleep=sleeps, rng=lambda: 1.0,
                     backoff=0.01) as podos:
        with pytest.raises(PodosError) as failed:
            podos.mail_classes()
    assert (failed.value.status, failed.value.code, failed.value.transient) == (None, "connection_error", True)
    assert str(failed.value).startswith("connection error: ")
    assert sleeps == [0.01, 0.02]


@pytest.mark.parametrize("case", ["400", "401", "404", "409", "422 sku", "422 mail class"])
def test_refusals_are_never_retried(sim, case):
    sleeps = Sleeps()
    token = "wrong-token" if case == "401" else TOKEN
    expected = {"400": (400, "bad_request"), "401": (401, "unauthorized"), "404": (404, "not_found"),
                "409": (409, "idempotency_conflict"), "422 sku": (422, "invalid_sku"),
                "422 mail class": (422, "invalid_mail_class")}[case]
    with client(sim, token=token, sleep=sleeps) as podos:
        if case == "409":
            podos.submit(order_body("1001"), "job-1")
        before = len(sim.requests())
        with pytest.raises(PodosError) as refused:
            if case == "400":
                podos.submit({"mail_class": "Standard", "items": []}, "job-x")
            elif case == "404":
                podos.order("pod-424242")
            elif case == "409":
                podos.submit(order_body("1002"), "job-1")
            elif case == "422 sku":
                podos.submit(order_body(items=[{"sku": "NOPE-1", "quantity": 1}]), "job-x")
            elif case == "422 mail class":
                podos.submit(order_body(mail_class="Carrier Pigeon"), "job-x")
            else:
                podos.submit(order_body(), "job-x")
    error = refused.value
    assert (error.status, error.code, error.transient, error.retry_after) == (*expected, False, None)
    assert str(error) == f"HTTP {error.status} {error.code}: {error.message}" and error.message
    assert sleeps == []
    assert len(sim.requests()) - before == 1


def test_invalid_sku_lists_the_skus(sim):
    sim.reject_skus(["POSTER-SUNRISE-18X24"])
    items = [{"sku": "POSTER-SUNRISE-18X24", "variant_id": "pv-55012", "quantity": 1},
             {"sku": "NOPE-2", "quantity": 1}]
    with client(sim) as podos:
        with pytest.raises(PodosError) as refused:
            podos.submit(order_body(items=items), "job-1")
    assert (refused.value.code, sorted(refused.value.skus)) == ("invalid_sku", ["NOPE-2", "POSTER-SUNRISE-18X24"])
    assert sim.orders() == []


# ---- the async client -----------------------------------------------------------------------------------


def async_client(sim, **kw) -> AsyncPodosClient:
    kw.setdefault("sleep", Sleeps().wait)
    return AsyncPodosClient(sim.url, PROJECT, TOKEN, **kw)


def test_async_submit_then_duplicate_and_look_ups(sim):
    async def scenario():
        async with async_client(sim) as podos:
            first = await podos.submit(order_body(), "job-1")
            again = await podos.submit(order_body(), "job-2")
            found = await podos.find("1001")
            shown = await podos.order(first.order["id"])
            return first, again, found, shown, await podos.mail_classes(), await podos.products(), \
                await podos.variants(), await podos.designs()

    first, again, found, shown, mail_classes, products, variants, designs = asyncio.run(scenario())
    assert (first.created, again.created) == (True, False)
    assert first.order["id"] == again.order["id"] == found["id"] == shown["id"]
    assert len(mail_classes) == 6 and products and variants and designs
    [stored] = sim.orders()
    assert stored["submissions"] == 2


def test_async_503_retried_with_backoff_and_refusals_not(sim):
    sim.add_fault(status=503, times=2, method="POST", path="/v1/orders")
    sleeps = Sleeps()

    async def scenario():
        async with async_client(sim, backoff=0.2, rng=lambda: 0.25, sleep=sleeps.wait) as podos:
            created = await podos.submit(order_body(), "job-1")
            try:
                await podos.submit(order_body("1002", mail_class="Carrier Pigeon"), "job-2")
            except PodosError as exc:
                return created, exc

    created, refused = asyncio.run(scenario())
    assert created.created is True
    assert sleeps == pytest.approx([0.25 * 0.2, 0.25 * 0.4])
    assert (refused.status, refused.transient) == (422, False)
    assert len(posts(sim)) == 4 and len(sim.orders()) == 1


def test_async_retry_after_too_long_raises_at_once(sim):
    sim.add_fault(status=429, times=1, retry_after=120, method="GET", path="/v1/designs")
    sleeps = Sleeps()

    async def scenario():
        async with async_client(sim, sleep=sleeps.wait) as podos:
            await podos.designs()

    with pytest.raises(PodosError) as failed:
        asyncio.run(scenario())
    assert (failed.value.status, failed.value.transient, failed.value.retry_after) == (429, True, 120.0)
    assert sleeps == []


def test_async_duplicate_after_a_timeout_gives_exactly_one_podos_order(sim):
    sim.add_fault(latency=0.6, times=1, method="POST", path="/v1/orders")
    sleeps = Sleeps(real=1.0)

    async def scenario():
        async with async_client(sim, timeout=0.3, backoff=0.5, rng=lambda: 1.0, sleep=sleeps.wait) as podos:
            return await podos.submit(order_body(), "job-1")

    submission = asyncio.run(scenario())
    assert submission.created is False and sleeps == [0.5]
    [stored] = sim.orders()
    assert stored["submissions"] == 2
    assert [header(r, "Idempotency-Key") for r in posts(sim)] == ["job-1", "job-1"]


# ---- the token shows up nowhere -------------------------------------------------------------------------


def _chain(error: BaseException):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _reachable(value, depth: int = 6, seen: set | None = None):
    """Every str and bytes reachable from ``value`` through attributes, mappings and sequences."""
    seen = set() if seen is None else seen
    if isinstance(value, (str, bytes)):
        yield value
        return
    if depth == 0 or id(value) in seen or isinstance(value, (int, float, type(None))):
        return
    seen.add(id(value))
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    else:
        children = list(getattr(value, "__dict__", {}).values())
        children += [getattr(value, name, None) for name in getattr(type(value), "__slots__", ())
                     if isinstance(name, str)]
    for child in children:
        yield from _reachable(child, depth - 1, seen)


def _leaks(error: BaseException) -> list[str]:
    """Where ``SECRET`` shows in an exception: its text, args, anything its chain's exceptions hold (an httpx
    error holds its request and headers), or the repr of a local of its traceback's frames."""
    found = []
    for link in _chain(error):
        for where, text in (("str", str(link)), ("repr", repr(link)), ("args", repr(link.args))):
            if SECRET in text:
                found.append(f"{type(link).__name__} {where}")
        if any(SECRET in (text.decode("latin-1") if isinstance(text, bytes) else text)
               for text in _reachable([link.args, vars(link)])):
            found.append(f"{type(link).__name__}: held data")
        tb = link.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                if SECRET in repr(value):
                    found.append(f"{tb.tb_frame.f_code.co_name}: local {name}")
            tb = tb.tb_next
    return found


def test_the_token_is_in_no_error_log_record_or_repr(caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[PodosError] = []

    def failing(call) -> None:
        with pytest.raises(PodosError) as failed:
            call()
        errors.append(failed.value)

    with Simulator(token=SECRET, port=0) as sim, Simulator(token="another-token", port=0) as other:
        kw = {"sleep": Sleeps(), "rng": lambda: 0.0, "retries": 1, "timeout": 0.3}
        with PodosClient(sim.url, PROJECT, SECRET, **kw) as podos, \
                PodosClient(other.url, PROJECT, SECRET, **kw) as unauthorized:
            assert SECRET not in repr(podos) and SECRET not in str(podos)
            failing(lambda: unauthorized.designs())  # 401
            failing(lambda: podos.submit({"items": []}, "k-400"))  # 400
            failing(lambda: podos.order("pod-404404"))  # 404
            podos.submit(order_body("7"), "k-1")
            failing(lambda: podos.submit(order_body("8"), "k-1"))  # 409
            failing(lambda: podos.submit(order_body(items=[{"sku": "NOPE", "quantity": 1}]), "k-422"))  # 422
            sim.add_fault(status=429, retry_after=120, times=1)
            failing(lambda: podos.designs())  # too long a Retry-After
            sim.add_fault(status=503, retry_after=0, times=2)
            failing(lambda: podos.designs())  # out of retries
            sim.add_fault(drop=True, times=2)
            failing(lambda: podos.designs())  # dropped connections
            sim.add_fault(hang=True, times=2)
            failing(lambda: podos.designs())  # timeouts
            sim.clear_faults()
            returned = [podos.designs(), podos.products(), podos.variants(), podos.find("7"), podos.mail_classes()]
        port = sim.url.rsplit(":", 1)[1]
    with PodosClient(f"http://127.0.0.1:{port}", PROJECT, SECRET, **kw) as closed:
        failing(lambda: closed.designs())  # connection refused
    assert [e.status for e in errors] == [401, 400, 404, 409, 422, 429, 503, None, None, None]
    assert [e.code for e in errors][-3:] == ["connection_error", "timeout", "connection_error"]
    for error in errors:
        assert not _leaks(error), (error, _leaks(error))
    assert SECRET not in repr(returned)
    assert any(r.name == "ruledesk.podos" and r.levelno == logging.WARNING for r in caplog.records)
    assert any(r.name == "ruledesk.podos" and r.levelno == logging.DEBUG for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in repr(record.args), record


def test_the_async_client_shows_the_token_nowhere_either(caplog):
    caplog.set_level(logging.DEBUG)

    async def failures(url: str) -> list[PodosError]:
        found = []
        async with AsyncPodosClient(url, PROJECT, SECRET, sleep=Sleeps().wait, retries=1, timeout=0.3) as podos:
            assert SECRET not in repr(podos)
            for call in (lambda: podos.designs(), lambda: podos.submit({"items": []}, "k"),
                         lambda: podos.designs(), lambda: podos.designs(), lambda: podos.products()):
                try:
                    await call()
                except PodosError as exc:
                    found.append(exc)
        return found

    with Simulator(token=SECRET, port=0) as sim:
        sim.add_fault(status=401, times=1, path="/v1/designs")
        sim.add_fault(drop=True, times=2, path="/v1/designs")  # the third call
        sim.add_fault(hang=True, times=2, path="/v1/designs")  # the fourth
        sim.add_fault(status=503, path="/v1/products")
        errors = asyncio.run(failures(sim.url))
    assert [(e.status, e.code) for e in errors] == [(401, "unauthorized"), (400, "bad_request"),
                                                     (None, "connection_error"), (None, "timeout"),
                                                     (503, "unavailable")]
    for error in errors:
        assert not _leaks(error), (error, _leaks(error))
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in repr(record.args), record
