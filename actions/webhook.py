"""Post Order JSON: posts the order to a URL as Order Desk does, signed with the store's API key, retried over two hours.

The action records a ``webhook.post`` job (no I/O while rules run); its handler posts the order as
it is when the job runs (docs/webhooks.md):

- the body is the form field ``order`` holding the order JSON (``format: "form"``, the default) or
  the order JSON itself (``format: "json"``);
- ``X-Order-Desk-Store-Id`` is the store's id, ``X-Order-Desk-Hash`` the hex HMAC-SHA256 of the
  order JSON text, keyed with the store's API key, and ``Idempotency-Key`` the job's key;
- the order JSON never holds a ``%`` (it is written ``\\u0025``), so the text the hash covers is
  the same whether a receiver url-decodes the form field once more, as Order Desk's PHP sample
  does (``rawurldecode($_POST['order'])``), or not;
- only 200 and 201 are success; anything else (another status, a redirect, which is not followed,
  a timeout, a refused connection) is tried again, ``webhooks.retries`` times (5) spread over
  ``webhooks.retry_window`` seconds (2 hours), and then recorded on the order as a note (with
  "Note Added") and in the job's failure.  A store without an id or an API key fails at once.

The API key signs and is never shown: not in a decision, an error, a note, a log line or a preview.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import logging
import random
import threading
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from pydantic import Field

from ruledesk.engine.model.catalogue import action
from ruledesk.engine.model.config import WebhookSettings
from ruledesk.engine.model.context import ActionContext, ActionError, Emitted
from ruledesk.engine.model.jobs import (Done, Failed, Job, JobContext, Outcome, Retry, handler, preview,
                                        retry_after_seconds)
from ruledesk.engine.model.order import Note, dump_order, to_json
from ruledesk.engine.model.settings import _http_url

from ruledesk.actions.order import ActionParams, _is_template

POST = "webhook.post"  # the job kind
NOTE_ADDED = "Note Added"
SUCCESS = (200, 201)  # Order Desk's: anything else is a failed post
RETRY_AFTER = (429, 503)  # answers whose Retry-After is honoured (at most the retry window)
JITTER = 0.1  # each wait is up to this share shorter than planned, so failed posts do not retry in step
SNIPPET = 200  # characters of a refusal's body kept in the error

log = logging.getLogger("ruledesk.webhook")


class PostOrderJsonParams(ActionParams):
    url: str = Field(min_length=1, description="where to post: an http:// or https:// URL (may be a template)")
    format: Literal["form", "json"] = Field(
        "form", description='"form": the form field order holding the order JSON (Order Desk\'s); '
                            '"json": the order JSON as the body')
    include_history: bool = Field(False, description="include the order's notes (order_notes, its history)")


def _check_url(literals: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """A literal url must be one an HTTP client can post to (a template is checked once rendered)."""
    url = literals.get("url")
    if not isinstance(url, str) or not url or _is_template(url):
        return []
    try:
        _http_url(url)
    except ValueError as exc:
        return [("url", f'the url of "Post Order JSON" is not usable: {exc}', None)]
    return []


@action("Post Order JSON", PostOrderJsonParams, job=POST, mutates_order=False, touches=(), static_check=_check_url)
def post_order_json(ctx: ActionContext, params: PostOrderJsonParams) -> None:
    """POST the order as JSON to a URL, signed as Order Desk signs it (a job: retried over 2 hours)."""
    try:
        _http_url(params.url)
    except ValueError as exc:
        raise ActionError(f"url {params.url!r}: {exc}") from None


# ---- settings and the request --------------------------------------------------------------------


def webhook_settings(config: Any) -> WebhookSettings:
    """The ``webhooks:`` settings of a configuration (Order Desk's defaults without one)."""
    settings = getattr(config, "webhooks", None)
    return settings if isinstance(settings, WebhookSettings) else WebhookSettings()


def attempts(config: Any) -> int:
    """How many attempts a post gets: the first, and ``webhooks.retries`` more."""
    return webhook_settings(config).retries + 1


def order_json(order: dict[str, Any], include_history: bool) -> str:
    """The Order Desk JSON text of ``order`` as posted and signed: compact, UTF-8, ``order_notes``
    left out unless ``include_history``, and every ``%`` written ``\\u0025`` (the same character to
    a JSON reader), so that url-decoding the text, as Order Desk's PHP sample does before it checks
    the hash, leaves it as it is."""
    data = dump_order(order)
    if not include_history:
        data.pop("order_notes", None)
    return to_json(data, dumped=True).replace("%", "\\u0025")


def signature(text: str, api_key: str) -> str:
    """``X-Order-Desk-Hash``: the hex HMAC-SHA256 of the order JSON text (UTF-8), keyed with the API key."""
    return hmac.new(api_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


class NotConfigured(Exception):
    """The order's store lacks what a post needs (its id, its API key)."""


def _credentials(store: Any) -> tuple[str, str]:
    store_id = getattr(store, "id", None)
    api_key = getattr(store, "api_key", None)
    name = getattr(store, "name", "?")
    missing = [what for what, value in (("id (stores[].id, sent as X-Order-Desk-Store-Id)", store_id),
                                        ("api_key (stores[].api_key: env:NAME, signs X-Order-Desk-Hash)", api_key))
               if not value]
    if missing:
        raise NotConfigured(f"the store {name!r} has no {' and no '.join(missing)}")
    secret = api_key.get_secret_value()
    if not secret:
        raise NotConfigured(f"the store {name!r} has an empty api_key")
    return str(store_id), secret


def build_request(job: Job, ctx: JobContext) -> tuple[dict[str, str], bytes, str]:
    """The headers and body of the post of ``job`` for the order as it is now, and the signed text."""
    store_id, api_key = _credentials(ctx.store)
    text = order_json(ctx.order, bool(job.params.get("include_history")))
    headers = {"X-Order-Desk-Store-Id": store_id, "X-Order-Desk-Hash": signature(text, api_key),
               "Idempotency-Key": job.key}
    if job.params.get("format") == "json":
        headers["Content-Type"] = "application/json"
        body = text.encode("utf-8")
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode({"order": text}).encode("ascii")
    return headers, body, text


# ---- the client ------------------------------------------------------------------------------------

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def default_client() -> httpx.Client:
    """One pooled client for the process's posts; redirects are not followed (a 3xx is a failed post)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False)
        return _client


# ---- the handler -----------------------------------------------------------------------------------


class _PostFailed(Exception):
    """One attempt that did not deliver: why, the HTTP status if there was one, and the receiver's
    Retry-After header when it asked for time (a 429 or a 503)."""

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@handler(POST, attempts=attempts)
def post(job: Job, ctx: JobContext) -> Outcome:
    """Post the order; Done on 200/201, else Retry while attempts remain, then the note on the order."""
    settings = webhook_settings(ctx.config)
    url = str(job.params.get("url", ""))
    try:
        headers, body, _ = build_request(job, ctx)
    except NotConfigured as exc:
        return _give_up(job, ctx, f"Post Order JSON to {url} was not sent: {exc}", {"url": url})
    api_key = ctx.store.api_key.get_secret_value()
    client = ctx.clients.get("webhook") or default_client()
    try:
        status = _send(client, url, headers, body, settings.timeout, api_key)
    except _PostFailed as exc:
        error = str(exc)
        log.warning("Post Order JSON %s (order %s, attempt %d of %d): %s", url, job.order_id, ctx.attempt,
                    ctx.max_attempts, error)
        detail = {"url": url, "attempt": ctx.attempt, "status": exc.status}
        if ctx.final:
            plural = "s" if ctx.attempt > 1 else ""
            return _give_up(job, ctx, f"Post Order JSON to {url} failed after {ctx.attempt} attempt{plural}: "
                                      f"{error}", detail)
        return Retry(_retry_at(ctx, settings, exc.retry_after), error)
    return Done(detail={"url": url, "status": status, "attempt": ctx.attempt})


def _send(client: httpx.Client, url: str, headers: dict[str, str], body: bytes, timeout: float,
          api_key: str) -> int:
    """POST once; the status when it is 200 or 201, else _PostFailed saying why (never the key)."""
    try:
        response = client.post(url, content=body, headers=headers, timeout=httpx.Timeout(timeout),
                               follow_redirects=False)
    except httpx.TimeoutException:
        raise _PostFailed(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:  # refused, reset, a bad URL: the exception (which holds the request) is dropped
        raise _PostFailed(_scrub(f"{type(exc).__name__}: {exc}", api_key)) from None
    status = response.status_code
    if status in SUCCESS:
        return status
    message = f"HTTP {status}"
    if response.is_redirect:
        message += f" (a redirect to {response.headers.get('Location', '?')}: not followed)"
    snippet = _scrub(response.text, api_key)[:SNIPPET].strip()
    if snippet:
        message += f": {snippet}"
    retry_after = response.headers.get("Retry-After") if status in RETRY_AFTER else None
    raise _PostFailed(_scrub(message, api_key), status, retry_after)


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "**********") if secret else text


def _retry_after(value: str | None, now: _dt.datetime) -> float | None:
    """A Retry-After header in seconds from ``now``; None when absent, unreadable or gone by."""
    seconds = retry_after_seconds(value, now)
    return seconds if seconds is not None and seconds >= 0 else None


def retry_delay(settings: WebhookSettings, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1: the first post): each retry waits twice the
    one before, the ``retries`` waits together making ``retry_window`` (5 over 2 hours: about 4, 8, 15,
    31 and 62 minutes), each up to ``JITTER`` shorter at random."""
    share = 2 ** (attempt - 1) / max(1, 2 ** settings.retries - 1)
    return settings.retry_window * share * (1 - JITTER * rng())


def _retry_at(ctx: JobContext, settings: WebhookSettings, header: str | None) -> _dt.datetime:
    wait = retry_delay(settings, ctx.attempt)
    retry_after = _retry_after(header, ctx.now())
    if retry_after is not None:  # the receiver asked for more time: granted, up to the whole window
        wait = max(wait, min(retry_after, settings.retry_window))
    return ctx.now() + _dt.timedelta(seconds=wait)


def _give_up(job: Job, ctx: JobContext, error: str, detail: dict[str, Any]) -> Failed:
    """The terminal failure: a note on the order saying so, and "Note Added" for the rules."""
    order = copy.deepcopy(ctx.order)
    note = Note(content=error, username="ruledesk", date_added=ctx.now())
    order.setdefault("order_notes", []).append(note.model_dump())
    return Failed(error, events=(Emitted(NOTE_ADDED, {"note": error}),), detail=detail, order=order)


# ---- the dry run ---------------------------------------------------------------------------------


@preview(POST)
def request_preview(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The post a dry run would make for the order as it is now: method, URL, headers (the hash is
    shown, the key it is made with never), and the body (the form fields, or the JSON text)."""
    url = str(job.params.get("url", ""))
    try:
        headers, _, text = build_request(job, ctx)
    except NotConfigured as exc:
        return {"outcome": "failed", "error": f"Post Order JSON to {url} would not be sent: {exc}"}
    body: Any = text if job.params.get("format") == "json" else {"order": text}
    return {"outcome": "sent", "method": "POST", "url": url, "headers": headers, "body": body,
            "timeout": webhook_settings(ctx.config).timeout}
