"""The order model: Order Desk's order JSON (API v2) validated into ruledesk's runtime representation.

Runtime representation (what ``parse_order`` returns and compiled rules read):
plain dicts and lists; every declared field present; numbers are ``int`` (counts) or
``decimal.Decimal`` (money, weights; and any JSON float anywhere, extras included) -- never
``float``; dates are timezone-aware UTC ``datetime``; ids are ``str``; unknown fields kept.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ruledesk.grammar.diagnostics import closest
from ruledesk.engine.model.fastorder import Coercions, order_parser
from ruledesk.engine.model.fastorder import load_json as load_json  # re-exported: JSON text as the model reads it
from ruledesk.engine.model.types import Record, Scalar, record_of_model

UTC = _dt.timezone.utc
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class OrderError(ValueError):
    """An order, or a value for one of its fields, that does not fit the order model."""


# --- coercions ------------------------------------------------------------------------------


# Bounds on numbers (docs/language.md, "Hostile input"): every number an order holds has at most
# MAX_DIGITS significant digits and a decimal exponent within +-MAX_EXPONENT, so arithmetic,
# comparison and output stay cheap (never a gigantic int, never past Python's int/str limit);
# a count (an int field) has at most MAX_COUNT_DIGITS digits, any other whole number about
# MAX_EXPONENT digits (_MAX_INT_BITS).
MAX_DIGITS = 100
MAX_EXPONENT = 1000
MAX_COUNT_DIGITS = 18
MAX_DEPTH = 100  # lists and maps inside an order nest at most this deep
_MAX_INT_BITS = 3322  # about 1000 decimal digits: a larger JSON int is refused before any conversion


def _to_decimal(value: Any) -> Decimal | None:
    """A number, exactly: JSON numbers, numeric strings and floats (via their shortest repr)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ValueError(f"a whole number of more than {MAX_EXPONENT} digits is out of range")
    if isinstance(value, str) and len(value) > 4 * MAX_DIGITS:
        raise ValueError(f"a number of more than {MAX_DIGITS} digits is not accepted: {value[:20]!r}...")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    return _bounded(number, value)


def _bounded(number: Decimal, written: Any) -> Decimal:
    if not number.is_finite():
        raise ValueError(f"not a finite number: {written!r}")
    if number and not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
        raise ValueError(f"{str(written)[:40]} is out of range (numbers are at most 1e{MAX_EXPONENT}, "
                         f"at least 1e-{MAX_EXPONENT} apart from zero)")
    if len(number.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"{str(written)[:40]}... has more than {MAX_DIGITS} significant digits")
    return number


def _to_int(value: Any) -> int | None:
    number = _to_decimal(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise ValueError(f"not a whole number: {value!r}")
    if number.adjusted() >= MAX_COUNT_DIGITS:
        raise ValueError(f"{str(value)[:40]} is too large a count (at most {MAX_COUNT_DIGITS} digits)")
    return int(number)


def _to_datetime(value: Any) -> _dt.datetime | None:
    """A UTC datetime from Order Desk's "YYYY-MM-DD HH:MM:SS", ISO 8601 or a datetime; naive means UTC.

    Empty strings and Order Desk's zero date ("0000-00-00 ...") mean no date.
    """
    if value is None or (isinstance(value, str) and (not value.strip() or value.startswith("0000-00-00"))):
        return None
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not a date: {value[:60]!r} (expected YYYY-MM-DD HH:MM:SS or ISO 8601)") from None
    if not isinstance(value, _dt.datetime):
        raise ValueError(f"expected a date, got {type(value).__name__}")
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is before the first representable UTC moment
        raise ValueError(f"not a date in range: {value.isoformat()}") from None


def _empty_map(value: Any) -> Any:
    """Order Desk writes an empty object as ``[]`` (PHP) and sometimes as null."""
    return {} if value is None or value == [] else value


def _empty_list(value: Any) -> Any:
    return [] if value is None else value


def _folder(value: Any) -> Any:
    return "New" if value is None or value == "" else value


Money = Annotated[Decimal | None, BeforeValidator(_to_decimal)]
Count = Annotated[int | None, BeforeValidator(_to_int)]
Timestamp = Annotated[_dt.datetime | None, BeforeValidator(_to_datetime)]


def parse_datetime(text: str) -> _dt.datetime | None:
    """A date as rules and Order Desk write it (``date("2026-11-23")``), UTC; None if it is not one."""
    try:
        return _to_datetime(text)
    except ValueError:
        return None
Map = Annotated[dict[str, Any], BeforeValidator(_empty_map)]


def _map() -> Any:
    return Field(default_factory=dict)


def _list() -> Any:
    return Field(default_factory=list)


# --- models ---------------------------------------------------------------------------------


class OrderDeskModel(BaseModel):
    """Base of the Order Desk records: extra fields are kept, numbers are accepted where text is due."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class Address(OrderDeskModel):
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    address3: str | None = None
    address4: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    phone: str | None = None


class OrderItem(OrderDeskModel):
    id: str | None = None
    name: str | None = None
    price: Money = None
    quantity: Count = None
    weight: Money = None
    code: str | None = None
    delivery_type: str | None = None
    category_code: str | None = None
    variation_list: Annotated[dict[str, str], BeforeValidator(_empty_map)] = _map()
    metadata: Map = _map()
    date_added: Timestamp = None
    date_updated: Timestamp = None


class Shipment(OrderDeskModel):
    id: str | None = None
    order_id: str | None = None
    store_id: str | None = None
    tracking_number: str | None = None
    carrier_code: str | None = None
    shipment_method: str | None = None
    weight: Money = None
    cost: Money = None
    status: str | None = None
    tracking_url: str | None = None
    print_status: str | None = None
    date_shipped: Timestamp = None
    date_added: Timestamp = None
    label_format: str | None = None
    label_image: str | None = None
    label_source: str | None = None


class Note(OrderDeskModel):
    date_added: Timestamp = None
    username: str | None = None
    content: str | None = None


class Order(OrderDeskModel):
    id: str | None = None
    email: str | None = None
    shipping_method: str | None = None
    quantity_total: Money = None
    weight_total: Money = None
    product_total: Money = None
    shipping_total: Money = None
    handling_total: Money = None
    tax_total: Money = None
    discount_total: Money = None
    order_total: Money = None
    cc_number_masked: str | None = None
    cc_exp: str | None = None
    processor_response: str | None = None
    payment_type: str | None = None
    payment_status: str | None = None
    processor_balance: Money = None
    refund_total: Money = None
    customer_id: str | None = None
    email_count: Count = None
    ip_address: str | None = None
    tag_color: str | None = None
    tag_name: str | None = None
    source_id: str | None = None
    source_name: str | None = None
    folder_id: str | None = None
    folder: Annotated[str, BeforeValidator(_folder)] = "New"
    date_added: Timestamp = None
    date_updated: Timestamp = None
    shipping: Annotated[Address, BeforeValidator(_empty_map)] = Field(default_factory=Address)
    customer: Annotated[Address, BeforeValidator(_empty_map)] = Field(default_factory=Address)
    return_address: Annotated[Address, BeforeValidator(_empty_map)] = Field(default_factory=Address)
    checkout_data: Map = _map()
    order_metadata: Map = _map()
    discount_list: Annotated[list[dict[str, Any]], BeforeValidator(_empty_list)] = _list()
    order_notes: Annotated[list[Note], BeforeValidator(_empty_list)] = _list()
    order_items: Annotated[list[OrderItem], BeforeValidator(_empty_list)] = _list()
    order_shipments: Annotated[list[Shipment], BeforeValidator(_empty_list)] = _list()


# --- static types ---------------------------------------------------------------------------


def _closed_record(model: type[BaseModel], name: str) -> Record:
    """The model's Record with unknown fields as check errors (so a typo gets a suggestion)."""
    record = record_of_model(model, name)
    object.__setattr__(record, "extra", None)
    return record


ADDRESS_TYPE = _closed_record(Address, "address")
NOTE_TYPE = _closed_record(Note, "note")
SHIPMENT_TYPE = _closed_record(Shipment, "shipment")
ITEM_TYPE = _closed_record(OrderItem, "item")
ORDER_TYPE = _closed_record(Order, "order")


# --- validation errors ----------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "order"


def _problem(error: Any) -> str:
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    got = _short_repr(error.get("input"))
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {got}"


def _short_repr(value: Any) -> str:
    """At most 60 characters of ``repr(value)``; never an error (an int past Python's str limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} holding a number of more than 4300 digits"
    return text[:60]


def _describe(exc: ValidationError) -> str:
    """A one-line account of a ValidationError: ``path: problem; ...``."""
    problems = [f"{_path(e['loc'])}: {_problem(e)}" for e in exc.errors()]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


class _BadValue(ValueError):
    """A value deep in an order that does not fit; ``path`` is filled in on the way out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.path: list[str] = []

    def where(self) -> str:
        text = ""
        for part in reversed(self.path):
            part = part.encode("utf-8", "backslashreplace").decode("utf-8")  # a key may be the bad text
            text += part if part.startswith("[") else (f".{part}" if text else part)
        return text if len(text) <= 80 else f"{text[:40]}...{text[-36:]}"


_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBERS = (float, Decimal)


def _check_text(text: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise _BadValue("text with a lone surrogate (\\ud800-\\udfff) is not valid Unicode")


def _normalise(value: Any, depth: int = 0) -> Any:
    """``value`` with every float (in free-form maps and extra fields) made an exact Decimal, and
    every number, text and nesting level within the bounds above; ``_BadValue`` names the first
    that is not.  Works in place on what ``model_dump`` just built (the walk is hot: one type test
    per value, a call only for containers and numbers)."""
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise _BadValue(f"lists and maps nest more than {MAX_DEPTH} levels deep")
        for key, item in value.items():
            item_kind = type(item)
            try:
                if item_kind is str:
                    _check_text(item)
                elif item_kind is dict or item_kind is list or item_kind in _NUMBERS or item_kind is int:
                    value[key] = _normalise(item, depth + 1)
                if key.__class__ is str:
                    _check_text(key)
            except _BadValue as bad:
                bad.path.append(str(key))
                raise
    elif kind is list:
        if depth >= MAX_DEPTH:
            raise _BadValue(f"lists and maps nest more than {MAX_DEPTH} levels deep")
        for index, item in enumerate(value):
            item_kind = type(item)
            try:
                if item_kind is str:
                    _check_text(item)
                elif item_kind is dict or item_kind is list or item_kind in _NUMBERS or item_kind is int:
                    value[index] = _normalise(item, depth + 1)
            except _BadValue as bad:
                bad.path.append(f"[{index}]")
                raise
    elif kind is int:
        if value.bit_length() > _MAX_INT_BITS:
            raise _BadValue(f"a whole number of more than {MAX_EXPONENT} digits is out of range")
    elif kind in _NUMBERS:
        try:
            return _to_decimal(value)
        except ValueError as exc:
            raise _BadValue(str(exc)) from None
    return value


def _parse(model: type[BaseModel], raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise OrderError(f"{what} must be a JSON object, got {type(raw).__name__}")
    try:
        dumped = model.model_validate(raw).model_dump()
    except ValidationError as exc:
        raise OrderError(f"invalid {what}: {_describe(exc)}") from exc
    except ValueError as exc:  # pydantic-core refusing a value outright (an int past Python's str limit)
        raise OrderError(f"invalid {what}: {exc}") from exc
    try:
        return _normalise(dumped)
    except _BadValue as bad:
        raise OrderError(f"invalid {what}: {bad.where()}: {bad}") from None


def bounded_value(value: Any, what: str = "value") -> Any:
    """Free-form JSON (an event payload, a value from outside) held to the bounds of an order's
    values: floats become Decimals, and a number out of range, nesting past ``MAX_DEPTH`` or a lone
    surrogate is an ``OrderError`` naming where.  Works in place on dicts and lists."""
    try:
        return _normalise(value)
    except _BadValue as bad:
        raise OrderError(f"invalid {what}: {bad.where()}: {bad}") from None


def pydantic_parse_order(raw: Any) -> dict[str, Any]:
    """The reference validation (pydantic, then ``_normalise``): ``parse_order``'s results and messages."""
    return _parse(Order, raw, "order")


COERCIONS = Coercions(_to_decimal, _to_int, _to_datetime, _empty_map, _empty_list, _folder, _SURROGATE.search,
                      MAX_DIGITS, MAX_EXPONENT, MAX_COUNT_DIGITS, MAX_DEPTH, _MAX_INT_BITS)
_FAST = order_parser(Order, COERCIONS, pydantic_parse_order, OrderError)


def parse_order(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate Order Desk order JSON into the runtime representation; ``OrderError`` if it does not fit.

    Fast: the common shapes by functions generated from the models (``fastorder``), anything else
    by ``pydantic_parse_order``, with the same results and messages.  Never changes ``raw``."""
    return _FAST.parse(raw)


ORDER_STRUCT = _FAST.struct  # the typed path's msgspec struct of an order (see fastorder)
order_from_struct = _FAST.from_struct  # an ORDER_STRUCT decoded from text -> the order, or any exception: use the dicts


def parse_order_json(text: str | bytes) -> dict[str, Any]:
    """Validate the JSON text of one order (JSON floats are exact Decimals, as ``load_json``);
    ``OrderError`` if it is not JSON or does not fit."""
    return _FAST.parse_json(text)


# --- output ---------------------------------------------------------------------------------


def format_datetime(moment: _dt.datetime) -> str:
    """Order Desk's date format, in UTC (a naive datetime is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(DATETIME_FORMAT)


def _dump_decimal(number: Decimal) -> int | float | str:
    if not number.is_finite() or not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
        return str(number)  # only arithmetic makes these (parse_order refuses them): never a gigantic int
    if number == number.to_integral_value():
        return int(number)
    as_float = float(number)
    return as_float if Decimal(repr(as_float)) == number else str(number)


def dump_value(value: Any) -> Any:
    """The JSON-able form of a runtime value; see ``dump_order``."""
    if isinstance(value, dict):
        return {key: dump_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [dump_value(item) for item in value]
    if isinstance(value, Decimal):
        return _dump_decimal(value)
    if isinstance(value, _dt.datetime):
        return format_datetime(value)
    return value


def dump_order(order: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able form of a runtime order, losing no value.

    Datetimes become "YYYY-MM-DD HH:MM:SS" (UTC).  A Decimal becomes an ``int`` when it is
    whole; otherwise a JSON number (a ``float``) only when that float's repr -- the text
    ``json.dumps`` writes -- denotes exactly the same value (``Decimal("12.50")`` -> ``12.5``);
    otherwise a string of the Decimal (``"0.10000000000000000001"``).  ``parse_order`` reads
    every one of these forms back to an equal value.
    """
    return dump_value(order)


def to_json(value: Any, *, dumped: bool = False) -> str:
    """Compact JSON of a runtime value (orders, decisions, payloads) dumped as ``dump_order`` does;
    ``dumped=True`` when ``value`` is JSON-able already (``Decision.to_json()``): no second walk."""
    data = value if dumped else dump_value(value)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not text.isascii() and _SURROGATE.search(text):  # a lone surrogate (from a payload, or \\ud800 in a rule)
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)  # escaped: valid UTF-8
    return text


def _orjson_default(value: Any) -> Any:
    """What orjson cannot write itself, as ``dump_value`` makes it JSON-able (Decimals, datetimes).

    Orders repeat their values (prices, the same dates on every item), so the dumped forms are
    kept: a Decimal's by its text (which gives back exactly that Decimal: sign, digits, exponent),
    a datetime by the datetime (equal ones are the same moment, formatted alike in UTC)."""
    kind = value.__class__
    if kind is Decimal:
        key = str(value)
        dumped = _DUMPED_DECIMALS.get(key, _dumped_decimals_miss)
        if dumped is _dumped_decimals_miss:
            dumped = _dump_decimal_text(value, key)
            _keep(_DUMPED_DECIMALS, key, dumped)
        return dumped
    if kind is _dt.datetime:
        dumped = _DUMPED_DATETIMES.get(value)
        if dumped is None:
            tz = value.tzinfo
            if (tz is None or tz is UTC) and value.year >= 1000:
                dumped = value.isoformat(" ")[:19]  # what strftime(DATETIME_FORMAT) writes, faster
            else:
                dumped = format_datetime(value)
            _keep(_DUMPED_DATETIMES, value, dumped)
        return dumped
    if isinstance(value, Decimal):
        return _dump_decimal(value)
    if isinstance(value, _dt.datetime):
        return format_datetime(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dump_decimal_text(number: Decimal, text: str) -> int | float | str:
    """``_dump_decimal(number)`` given ``text = str(number)``, read off the text for the common case:
    plain notation, at most 17 characters.  Whole: the int.  Otherwise, with at most 15 significant
    digits, the float (``float(Decimal)`` is ``float(str(Decimal))``), whose repr is then exactly
    this value: decimals of at most 15 digits (DBL_DIG) are told apart by the doubles nearest them,
    so the shortest repr of the double is this decimal.  Anything else: ``_dump_decimal``."""
    if len(text) > 17 or "E" in text or not text[-1].isdigit():  # exponent, NaN, Infinity, long
        return _dump_decimal(number)
    whole, _, fraction = text.partition(".")
    if not fraction.strip("0"):
        return int(whole)
    significant = (whole.lstrip("-") + fraction).lstrip("0").rstrip("0")
    return float(text) if len(significant) <= 15 else _dump_decimal(number)


_DUMPED_DECIMALS: dict[str, Any] = {}
_DUMPED_DATETIMES: dict[_dt.datetime, str] = {}
_dumped_decimals_miss = object()
_KEEP_AT_MOST = 4096  # entries per cache; a full cache starts afresh


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _KEEP_AT_MOST:
        cache.clear()
    cache[key] = value


# datetimes to the hook; dataclasses too: json.dumps refuses them, so orjson must not write them either
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def folder_of(order: dict[str, Any]) -> str | None:
    """The order's folder as the store indexes it (None when it is not text)."""
    folder = order.get("folder")
    return folder if isinstance(folder, str) else None


def to_json_text(value: Any) -> str:
    """``to_json(value)`` written by orjson, without a Python walk of ``value``: Decimals and
    datetimes are dumped as ``dump_value`` dumps them, as orjson meets them.  Raises TypeError
    (orjson.JSONEncodeError) for what orjson refuses (an int past 64 bits, a lone surrogate, a key
    that is not a str, nesting past 254 levels) -- the caller falls back on ``to_json``.  The text
    differs from ``to_json``'s only where JSON allows (a float's spelling: ``1e-7`` for
    ``1e-07``), and a float NaN or infinity (which runtime values never hold: they hold Decimals)
    is written as null rather than refused."""
    return orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTIONS).decode("utf-8")


# --- setting one field ----------------------------------------------------------------------

_NOT_SETTABLE = {
    "id": "the {kind}'s id identifies it and cannot be changed",
    "folder": 'the folder is changed with "Move to Folder" (which fires "Folder is Changed")',
}


@dataclass(frozen=True)
class _FieldSetter:
    """Which top-level scalar fields of a model "Set ... Field" may change, and their coercion."""

    model: type[BaseModel]
    record: Record

    def settable(self) -> list[str]:
        return sorted(
            name
            for name, kind in self.record.fields.items()
            if isinstance(kind, Scalar) and name not in _NOT_SETTABLE
        )

    def problem(self, field: str) -> tuple[str, str | None] | None:
        settable = self.settable()
        if field in settable:
            return None
        kind = self.record.name
        if field in self.record.fields and field in _NOT_SETTABLE:
            return _NOT_SETTABLE[field].format(kind=kind), None
        hits = closest(field, settable)
        suggestion = hits[0] if hits else None
        if field in self.record.fields:
            message = f"{kind} field {field!r} has type {self.record.fields[field]}; only single values can be set"
            return message, suggestion
        return f"{kind} has no field {field!r}", suggestion

    def validate(self, field: str, value: Any) -> Any:
        problem = self.problem(field)
        if problem is not None:
            message, suggestion = problem
            raise OrderError(message + (f" (did you mean {suggestion!r}?)" if suggestion else ""))
        try:
            return getattr(self.model.model_validate({field: value}), field)
        except ValidationError as exc:
            raise OrderError(_describe(exc)) from exc


_ORDER_FIELDS = _FieldSetter(Order, ORDER_TYPE)
_ITEM_FIELDS = _FieldSetter(OrderItem, ITEM_TYPE)


def order_field_problem(field: str) -> tuple[str, str | None] | None:
    """Why "Set Order Field" cannot set ``field``: (message, closest settable field or None); None if it can."""
    return _ORDER_FIELDS.problem(field)


def item_field_problem(field: str) -> tuple[str, str | None] | None:
    """Why "Set Item Field" cannot set ``field``: (message, closest settable field or None); None if it can."""
    return _ITEM_FIELDS.problem(field)


def validate_order_field(field: str, value: Any) -> Any:
    """``value`` coerced for the order's top-level scalar ``field``; ``OrderError`` if either does not fit."""
    return _ORDER_FIELDS.validate(field, value)


def validate_item_field(field: str, value: Any) -> Any:
    """``value`` coerced for an item's top-level scalar ``field``; ``OrderError`` if either does not fit."""
    return _ITEM_FIELDS.validate(field, value)

