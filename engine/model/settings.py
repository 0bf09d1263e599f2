"""Typed store settings (an Order Desk store and its integrations' settings), with secrets no rule, template or output can reach.

A secret (``api_key``, ``podos.token``) is a ``SecretStr``: its ``repr`` and ``str`` are stars,
it is left out of what rules and templates see (``StoreSettings.view``) and out of the checker's
store type, and in a configuration it is written only as a reference, ``env:NAME`` or
``file:PATH``, resolved when the configuration is loaded.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, SecretStr

from ruledesk.engine.model.order import bounded_value
from ruledesk.engine.model.types import Record, record_of_model


class SecretError(ValueError):
    """A secret reference that cannot be resolved (the message never contains the secret)."""


def resolve_secret(value: Any) -> Any:
    """``env:NAME`` -> the environment variable, ``file:PATH`` -> the file's text without its final
    newline; a ``SecretStr`` as it is.  A secret written out in the configuration is refused."""
    if isinstance(value, SecretStr) or value is None:
        return value
    if not isinstance(value, str):
        raise SecretError("a secret is a reference: env:NAME or file:PATH")
    kind, _, where = value.partition(":")
    if kind == "env" and where:
        if where not in os.environ:
            raise SecretError(f"the environment variable {where} is not set")
        return SecretStr(os.environ[where])
    if kind == "file" and where:
        try:
            return SecretStr(Path(where).expanduser().read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise SecretError(f"cannot read the secret file {where}: {exc.strerror or exc}") from None
    raise SecretError("write a secret as env:NAME or file:PATH, never in the configuration itself")


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]


class Settings(BaseModel):
    """Base of settings models: an unknown key is an error (a typo gets a suggestion from the checker)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True,
                              hide_input_in_errors=True)  # a refused secret is never echoed

    def __eq__(self, other: object) -> bool:
        """Equal settings are equal whatever was cached on them (``StoreSettings.view``)."""
        return type(self) is type(other) and self.__dict__ == other.__dict__


# The mail classes podOS ships with (docs/podos-api.md, GET /v1/shipping-methods): a fixed list,
# so a configuration naming anything else is refused when it is loaded, not at the first order.
PODOS_MAIL_CLASSES = ("Economy", "Standard", "Ground", "Priority", "Express", "Overnight")


def _mail_class(value: Any) -> Any:
    if isinstance(value, str) and value not in PODOS_MAIL_CLASSES:
        near = [c for c in PODOS_MAIL_CLASSES if c.casefold() == value.strip().casefold()]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"{value!r} is not a podOS mail class{hint}; podOS offers {', '.join(PODOS_MAIL_CLASSES)}")
    return value


MailClass = Annotated[str, AfterValidator(_mail_class)]


def _http_url(value: str) -> str:
    """An http(s) URL with a host that an HTTP client can use (checked as httpx parses it)."""
    import httpx  # noqa: PLC0415 -- only configurations with podOS settings need it

    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValueError(f"not a usable URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("expected an http:// or https:// URL with a host")
    return value


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """The entries of a text box (one per line; blank lines and # comments left out) with their line
    numbers as written, so an error names the line the user sees."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]


def _lines(value: Any) -> Any:
    """A setting Order Desk takes as a text box, one entry per line: a YAML block string, or a list."""
    return [line for _, line in _numbered_lines(value)] if isinstance(value, str) else value


def _code_match(value: Any) -> Any:
    """Product Code Match: ``CODE=SKU`` per line (a bundle: ``CODE=SKU1,SKU2``), as a block string,
    a list of such lines, or a mapping of code to SKU(s); each becomes code -> [SKU, ...]."""
    if isinstance(value, dict):
        entries = [(number, str(k), v) for number, (k, v) in enumerate(value.items(), 1)]
    else:
        if isinstance(value, str):  # numbered as written: an error names the line of the text box
            lines = _numbered_lines(value)
        elif isinstance(value, list):
            lines = list(enumerate(value, 1))
        else:
            raise ValueError("write one CODE=SKU per line (a bundle: CODE=SKU1,SKU2)")
        entries = []
        for number, line in lines:
            if not isinstance(line, str) or "=" not in line:
                raise ValueError(f"line {number} ({line!r}): expected CODE=SKU (a bundle: CODE=SKU1,SKU2)")
            code, _, skus = line.partition("=")
            entries.append((number, code, skus))
    match: dict[str, list[str]] = {}
    for number, code, skus in entries:
        code = code.strip()
        parts = skus if isinstance(skus, list) else str(skus).split(",")
        parts = [str(p).strip() for p in parts]
        if not code:
            raise ValueError(f"line {number}: the item code before '=' is empty")
        if not parts or not all(parts):
            raise ValueError(f"line {number} ({code}=...): an empty SKU (write CODE=SKU or CODE=SKU1,SKU2)")
        if code in match:
            raise ValueError(f"line {number}: the code {code!r} is matched twice")
        match[code] = parts
    return match


class PodosSettings(Settings):
    """The podOS integration's settings for one store (Order Desk's podOS settings page)."""

    project: str = Field(min_length=1, description="the podOS project name")
    token: Secret = Field(description="the podOS API token (a secret: env:NAME or file:PATH)")
    url: Annotated[str, AfterValidator(_http_url)] = Field(description="the podOS API base URL (http:// or https://)")
    after_import_folder: str | None = Field(None, description="folder an order moves to once podOS accepted it")
    default_mail_class: MailClass = Field("Standard", description="mail class when no Shipping Class Match applies")
    after_shipment_folder: str | None = Field(None, description="folder an order moves to when podOS ships it")
    shipping_class_match: dict[str, MailClass] = Field(
        default_factory=dict, description="shopping-cart shipping method (exact name) -> podOS mail class")
    product_code_match: Annotated[dict[str, list[str]], BeforeValidator(_code_match)] = Field(
        default_factory=dict, description="item code -> the podOS SKU(s) sent instead: CODE=SKU or CODE=SKU1,SKU2 "
                                          "per line")
    product_code_skip: Annotated[list[str], BeforeValidator(_lines)] = Field(
        default_factory=list, description="item codes never sent to podOS (one per line)")
    callback_url: Annotated[str, AfterValidator(_http_url)] | None = Field(None, description="where podOS posts shipments "
                                     "(this daemon's POST /v1/callbacks/podos/{store}); none: polling only")
    poll_interval: float = Field(300.0, gt=0, description="seconds between status polls of a submitted order")
    timeout: float = Field(10.0, gt=0, description="seconds to wait for podOS on one request")
    retries: int = Field(3, ge=0, le=10, description="quick retries of a transient failure within one attempt")


class StoreSettings(Settings):
    """One Order Desk store: what rules see as ``store`` (secrets left out)."""

    name: str = Field(min_length=1, description="the store's name, as events name it")
    id: str | None = Field(None, description="the Order Desk store id (sent as X-Order-Desk-Store-Id)")
    api_key: Secret | None = Field(None, description="the store's API key, signs Post Order JSON (a secret)")
    currency: str = Field("USD", description="the store's currency (ISO 4217 code)")
    timezone: str = Field("UTC", description="the store's timezone (IANA name) for dates in documents")
    settings: dict[str, Any] = Field(default_factory=dict, description="free-form settings rules may read")
    podos: PodosSettings | None = Field(None, description="the podOS integration's settings")

    _view: dict[str, Any] | None = PrivateAttr(None)

    def view(self) -> dict[str, Any]:
        """What rules and templates see as ``store``: every setting but the secrets.  Built once per
        settings object and shared (rules and templates only read it; actions get a copy)."""
        private = self.__pydantic_private__  # read directly: pydantic's private-attribute lookup costs µs
        view = private["_view"]
        if view is None:
            view = private["_view"] = _public(self)
        return view


def _is_secret(annotation: Any) -> bool:
    return "SecretStr" in repr(annotation)


def _public(model: BaseModel) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        if _is_secret(info.annotation):
            continue
        value = getattr(model, name)
        # free-form values in the runtime representation rules read (floats as exact Decimals)
        view[name] = _public(value) if isinstance(value, BaseModel) else bounded_value(copy.deepcopy(value), name)
    return view


def _public_record(model: type[BaseModel], name: str) -> Record:
    """The checker's type of ``store``: the model's fields without the secrets, closed to typos."""
    record = Record(name)
    for field_name, info in model.model_fields.items():
        if _is_secret(info.annotation):
            record.hidden[field_name] = "a secret"
            continue
        annotation = info.annotation
        inner = next((a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)
                      and issubclass(a, BaseModel)), annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            record.fields[field_name] = _public_record(inner, f"{name}.{field_name}")
        else:
            record.fields[field_name] = record_of_model(model).fields[field_name]
    return record


STORE_TYPE = _public_record(StoreSettings, "store")


def store_settings(value: StoreSettings | dict[str, Any] | str | None) -> StoreSettings:
    """Store settings from what an event or a caller gives: settings, a mapping, or just a name."""
    if isinstance(value, StoreSettings):
        return value
    if value is None or value == {}:
        return DEFAULT_STORE
    if isinstance(value, str):
        return _named_store(value)
    if "name" not in value:
        value = {**value, "name": DEFAULT_STORE.name}
    return StoreSettings.model_validate(value)


@functools.lru_cache(maxsize=1024)
def _named_store(name: str) -> StoreSettings:
    """A store known only by its name (no configured stores): one settings object per name."""
    return StoreSettings(name=name)


DEFAULT_STORE = StoreSettings(name="default")
