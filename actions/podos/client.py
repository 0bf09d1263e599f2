"""The podOS HTTP client (docs/podos-api.md): look-ups and idempotent submissions, retried with backoff, never showing the token."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable, NamedTuple
from urllib.parse import quote

import httpx
import orjson
from pydantic import SecretStr

from ruledesk.engine.model.jobs import retry_after_seconds

if TYPE_CHECKING:
    from ruledesk.engine.model.settings import PodosSettings

__all__ = ["AsyncPodosClient", "PodosClient", "PodosError", "Submission"]

log = logging.getLogger("ruledesk.podos")

# Transport failures worth another try: the request may not have reached podOS, or its answer was lost.
_TRANSIENT_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_SNIPPET = 200  # characters of a non-JSON error body kept in the message


class PodosError(Exception):
    """A podOS call that failed: an HTTP refusal (``status``, the server's flat ``code``/``message``/``skus``),
    a timeout or a connection error.  ``transient`` failures may succeed later (``retry_after`` seconds, when
    podOS said so); the others never will.  Holds no request, no header and no token."""

    def __init__(self, message: str, *, status: int | None = None, code: str, transient: bool,
                 retry_after: float | None = None, skus: list[str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after = retry_after
        self.skus = list(skus or [])
        super().__init__(self._text())

    def _text(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status} {self.code}: {self.message}"
        return f"{self.code.replace('_', ' ')}: {self.message}"

    def __str__(self) -> str:
        return self._text()

    def __repr__(self) -> str:
        return (f"PodosError(status={self.status!r}, code={self.code!r}, message={self.message!r}, "
                f"transient={self.transient!r}, retry_after={self.retry_after!r}, skus={self.skus!r})")


class Submission(NamedTuple):
    """podOS's answer to a submission: the order as podOS holds it, and whether this call created it
    (201) or podOS already had it (200, a duplicate: nothing is printed twice)."""

    order: dict[str, Any]
    created: bool


class _Bearer(httpx.Auth):
    """``Authorization: Bearer <token>`` added as each request leaves, the token kept a SecretStr until then."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class _Call(NamedTuple):
    method: str
    path: str
    params: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None


class _PodosBase:
    """What both clients share: settings, the request of each call, and the retry policy."""

    def __init__(self, url: str, project: str, token: str | SecretStr, *, timeout: float, retries: int,
                 backoff: float, max_backoff: float, max_retry_after: float, rng: Callable[[], float]) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = url.rstrip("/")
        self.project = project
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._rng = rng

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, project={self.project!r})"

    @classmethod
    def from_settings(cls, settings: PodosSettings, **kw: Any):
        """A client for a store's podOS settings (``url``, ``project``, ``token``, ``timeout``,
        ``retries``); ``kw`` overrides."""
        options = {"timeout": float(settings.timeout), "retries": settings.retries, **kw}
        return cls(settings.url, settings.project, settings.token, **options)

    def _client_options(self, limits: httpx.Limits | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "base_url": self.url, "auth": _Bearer(self._token), "timeout": httpx.Timeout(self.timeout),
            "headers": {"X-Podos-Project": self.project, "Accept": "application/json"},
        }
        if limits is not None:
            options["limits"] = limits
        return options

    @staticmethod
    def _submit_call(body: dict[str, Any], idempotency_key: str) -> _Call:
        return _Call("POST", "/v1/orders", content=orjson.dumps(body, default=_json_default),
                     headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key})

    def _scrub(self, text: str) -> str:
        """``text`` with the token starred out (a server or a library could quote it back)."""
        secret = self._token.get_secret_value()
        return text.replace(secret, "**********") if secret else text

    def _transport_error(self, exc: httpx.HTTPError, call: _Call) -> PodosError:
        """The PodosError of a failure to get an answer (the httpx exception, which holds the request and
        its headers, is not kept)."""
        detail = self._scrub(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return PodosError(f"no answer from podOS within {self.timeout:g} s ({call.method} {call.path}: {detail})",
                              code="timeout", transient=True)
        if isinstance(exc, _TRANSIENT_EXCEPTIONS):
            return PodosError(f"{call.method} {call.path}: {detail}", code="connection_error", transient=True)
        return PodosError(f"{call.method} {call.path}: {detail}", code="connection_error", transient=False)

    def _answer(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer, or the PodosError of any other (flat fields as podOS sent them)."""
        status = response.status_code
        try:
            data = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            data = None
        if 200 <= status < 300:
            if not isinstance(data, dict):
                raise PodosError(f"podOS answered {status} without a JSON object", status=status,
                                 code="bad_response", transient=False)
            return data
        transient = status == 429 or status >= 500
        fields = data if isinstance(data, dict) else {}
        code = fields.get("error") if isinstance(fields.get("error"), str) else (
            "rate_limited" if status == 429 else "server_error" if status >= 500 else "http_error")
        message = fields.get("message")
        if not isinstance(message, str):
            # starred out before it is cut: a token across the cut would otherwise show its start
            message = self._scrub(response.text)[:_SNIPPET].strip() or response.reason_phrase or "no message"
        skus = fields.get("skus")
        skus = [self._scrub(str(sku)) for sku in skus] if isinstance(skus, list) else []
        retry_after = _retry_after(response.headers.get("Retry-After")) if transient else None
        raise PodosError(self._scrub(message), status=status, code=self._scrub(code), transient=transient,
                         retry_after=retry_after, skus=skus)

    def _wait_before_retry(self, error: PodosError, call: _Call, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1 for the first retry) after ``error``; raises ``error``
        when it is final: not transient, out of retries, or podOS asks for a longer wait than we keep a
        caller waiting (the caller reschedules with ``retry_after``)."""
        if not error.transient or attempt > self.retries:
            raise error
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                raise error
            wait = error.retry_after
        else:
            wait = self._rng() * min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        log.warning("podOS %s %s failed (%s); retry %d of %d in %.2f s", call.method, call.path, error, attempt,
                    self.retries, wait)
        return wait

    @staticmethod
    def _logged(call: _Call, response: httpx.Response, attempt: int) -> httpx.Response:
        log.debug("podOS %s %s -> %d (attempt %d)", call.method, call.path, response.status_code, attempt)
        return response

    @staticmethod
    def _submission(response: httpx.Response, order: dict[str, Any]) -> Submission:
        return Submission(order, response.status_code == 201)


class PodosClient(_PodosBase):
    """A podOS client over one pooled, keep-alive ``httpx.Client``; use it as a context manager or ``close`` it."""

    def __init__(self, url: str, project: str, token: str | SecretStr, *, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 8.0, max_retry_after: float = 30.0,
                 sleep: Callable[[float], Any] = time.sleep, rng: Callable[[], float] = random.random,
                 transport: httpx.BaseTransport | None = None, limits: httpx.Limits | None = None) -> None:
        super().__init__(url, project, token, timeout=timeout, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, max_retry_after=max_retry_after, rng=rng)
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self._client_options(limits))

    def submit(self, body: dict[str, Any], idempotency_key: str) -> Submission:
        """Submit one order; every retry carries the same ``Idempotency-Key``, so podOS creates it at most once."""
        response, order = self._call(self._submit_call(body, idempotency_key))
        return self._submission(response, order)

    def order(self, podos_id: str) -> dict[str, Any]:
        """One podOS order, its status and shipments."""
        return self._call(_Call("GET", f"/v1/orders/{quote(podos_id, safe='')}"))[1]

    def find(self, order_desk_order_id: str) -> dict[str, Any] | None:
        """The podOS order of an Order Desk order, or None."""
        orders = _listed(self._call(_Call("GET", "/v1/orders", {"order_desk_order_id": order_desk_order_id}))[1], "orders")
        return orders[0] if orders else None

    def products(self, style_code: str | None = None) -> list[dict[str, Any]]:
        """Base (GFN) products, those of ``style_code`` when given."""
        params = {"style_code": style_code} if style_code is not None else None
        return _listed(self._call(_Call("GET", "/v1/products", params))[1], "products")

    def variants(self, product_id: str | None = None) -> list[dict[str, Any]]:
        """GFN variants, those of ``product_id`` when given."""
        params = {"product_id": product_id} if product_id is not None else None
        return _listed(self._call(_Call("GET", "/v1/variants", params))[1], "variants")

    def designs(self) -> list[dict[str, Any]]:
        """Pre-designed variants."""
        return _listed(self._call(_Call("GET", "/v1/designs"))[1], "designs")

    def mail_classes(self) -> list[str]:
        """The mail classes podOS ships with."""
        return _listed(self._call(_Call("GET", "/v1/shipping-methods"))[1], "mail_classes")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PodosClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, call: _Call) -> tuple[httpx.Response, dict[str, Any]]:
        attempt = 0
        while True:
            attempt += 1
            error = None
            try:
                response = self._http.request(call.method, call.path, params=call.params, content=call.content,
                                              headers=call.headers)
            except httpx.HTTPError as exc:
                error = self._transport_error(exc, call)
            if error is None:  # outside the handler: the PodosError chains no httpx exception (nor its request)
                try:
                    return response, self._answer(self._logged(call, response, attempt))
                except PodosError as refused:
                    error = refused
            else:
                log.debug("podOS %s %s -> %s (attempt %d)", call.method, call.path, error.code, attempt)
            self._sleep(self._wait_before_retry(error, call, attempt))


class AsyncPodosClient(_PodosBase):
    """``PodosClient`` for asyncio: the same calls as coroutines over one ``httpx.AsyncClient``; ``aclose`` it
    or use it as an async context manager."""

    def __init__(self, url: str, project: str, token: str | SecretStr, *, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 8.0, max_retry_after: float = 30.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, rng: Callable[[], float] = random.random,
                 transport: httpx.AsyncBaseTransport | None = None, limits: httpx.Limits | None = None) -> None:
        super().__init__(url, project, token, timeout=timeout, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, max_retry_after=max_retry_after, rng=rng)
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._client_options(limits))

    async def submit(self, body: dict[str, Any], idempotency_key: str) -> Submission:
        """Submit one order; every retry carries the same ``Idempotency-Key``, so podOS creates it at most once."""
        response, order = await self._call(self._submit_call(body, idempotency_key))
        return self._submission(response, order)

    async def order(self, podos_id: str) -> dict[str, Any]:
        """One podOS order, its status and shipments."""
        return (await self._call(_Call("GET", f"/v1/orders/{quote(podos_id, safe='')}")))[1]

    async def find(self, order_desk_order_id: str) -> dict[str, Any] | None:
        """The podOS order of an Order Desk order, or None."""
        found = await self._call(_Call("GET", "/v1/orders", {"order_desk_order_id": order_desk_order_id}))
        orders = _listed(found[1], "orders")
        return orders[0] if orders else None

    async def products(self, style_code: str | None = None) -> list[dict[str, Any]]:
        """Base (GFN) products, those of ``style_code`` when given."""
        params = {"style_code": style_code} if style_code is not None else None
        return _listed((await self._call(_Call("GET", "/v1/products", params)))[1], "products")

    async def variants(self, product_id: str | None = None) -> list[dict[str, Any]]:
        """GFN variants, those of ``product_id`` when given."""
        params = {"product_id": product_id} if product_id is not None else None
        return _listed((await self._call(_Call("GET", "/v1/variants", params)))[1], "variants")

    async def designs(self) -> list[dict[str, Any]]:
        """Pre-designed variants."""
        return _listed((await self._call(_Call("GET", "/v1/designs")))[1], "designs")

    async def mail_classes(self) -> list[str]:
        """The mail classes podOS ships with."""
        return _listed((await self._call(_Call("GET", "/v1/shipping-methods")))[1], "mail_classes")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPodosClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(self, call: _Call) -> tuple[httpx.Response, dict[str, Any]]:
        attempt = 0
        while True:
            attempt += 1
            error = None
            try:
                response = await self._http.request(call.method, call.path, params=call.params,
                                                    content=call.content, headers=call.headers)
            except httpx.HTTPError as exc:
                error = self._transport_error(exc, call)
            if error is None:  # outside the handler: the PodosError chains no httpx exception (nor its request)
                try:
                    return response, self._answer(self._logged(call, response, attempt))
                except PodosError as refused:
                    error = refused
            else:
                log.debug("podOS %s %s -> %s (attempt %d)", call.method, call.path, error.code, attempt)
            await self._sleep(self._wait_before_retry(error, call, attempt))


def _listed(answer: dict[str, Any], key: str) -> list[Any]:
    """The list a look-up answers with; a PodosError (bad_response) when podOS sent something else."""
    found = answer.get(key)
    if not isinstance(found, list):
        raise PodosError(f"podOS answered without a {key!r} list", status=200, code="bad_response",
                         transient=False)
    return found


MAX_RETRY_AFTER = 7 * 24 * 3600.0  # a Retry-After beyond a week is taken as a week


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a date gone by: 0, at most MAX_RETRY_AFTER); None when absent or unreadable."""
    seconds = retry_after_seconds(value, dt.datetime.now(dt.timezone.utc))
    return None if seconds is None else min(MAX_RETRY_AFTER, max(0.0, seconds))


def _json_default(value: Any) -> Any:
    """Decimals (how ruledesk keeps numbers exact) as JSON numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot send a {type(value).__name__} to podOS")
