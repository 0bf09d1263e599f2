"""Fast order validation: exactly the results of the pydantic path of ``order.py``, at a fraction of the cost.

``order.py`` validates an order with pydantic (``Order.model_validate(raw).model_dump()`` then the
``_normalise`` walk).  That path is the reference: it defines the runtime representation and every
error message.  ``order_parser`` puts a fast path in front of it:

* per model, a function generated from the model's ``model_fields`` (so a new field cannot be
  forgotten: a field of a kind ``_kind`` does not know stops the import) that handles the common
  shapes of Order Desk JSON -- text as ``str`` or ``None`` (or a small ``int``), money and counts
  as numeric strings, ints or floats, dates as strings (or UTC datetimes: an order parsed before),
  ``[]``/``None`` for empty maps and lists, free-form maps and extra fields -- with the model's own coercion functions (``_to_decimal``,
  ``_to_int``, ``_to_datetime``; a few shortcuts give exactly what they give);
* on anything else (a wrong type, a value a coercion refuses, a number, a nesting level or a text
  past the bounds of "Hostile input") it gives up and the pydantic path runs, which produces the
  result or the located ``OrderError`` it always did.  The messages are the same by construction;
  the results are the same by a property test (tests/engine/model/test_fastorder.py).

From JSON text, a typed path comes first: msgspec structs generated from the same models (text,
money and dates as JSON strings, counts as strings or ints, records and maps as objects or ``[]``,
unknown fields refused) check the types in C as the text is decoded, and a generated post-pass
does the rest (numbers from strings and their bounds, dates, defaults, the bounds of free-form
maps).  An order it does not take (a number where text is due, an extra field, a hostile value)
goes the untyped way: decoded to dicts, then the fast path above, then the reference.

JSON text is decoded by msgspec with ``float_hook=Decimal``: a JSON float is the exact ``Decimal``
of its literal (``12.50`` stays ``Decimal('12.50')``), as ``json.loads(text, parse_float=Decimal)``
gives; whatever msgspec refuses (invalid JSON, ``NaN``, lone surrogates, deep nesting, ints past
Python's digit limit) ``json.loads`` decides, so results and exceptions are json's.  msgspec
refuses every lone surrogate, so what it decoded needs no surrogate check ("clean" text).

This module imports nothing of the order model: ``order.py`` calls ``order_parser`` with its models
and coercions (no import cycle).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Union, get_args, get_origin

import msgspec
from pydantic import BaseModel, BeforeValidator

_decode = msgspec.json.Decoder(float_hook=Decimal).decode


def load_json(text: str | bytes) -> Any:
    """``json.loads(text, parse_float=Decimal)``, fast: the same value (exact Decimals for JSON
    floats, objects in input order, the last of duplicate keys) or the same exception."""
    try:
        return _decode(text)
    except Exception:  # invalid JSON, NaN/Infinity, lone surrogates, deep nesting: json decides
        return json.loads(text, parse_float=Decimal)


@dataclass(frozen=True)
class Coercions:
    """What the order model validates with; the fast path calls exactly these and keeps these bounds."""

    to_decimal: Callable[[Any], Decimal | None]
    to_int: Callable[[Any], int | None]
    to_datetime: Callable[[Any], _dt.datetime | None]
    empty_map: Callable[[Any], Any]
    empty_list: Callable[[Any], Any]
    folder: Callable[[Any], Any]
    surrogate: Callable[[str], Any]  # finds a lone surrogate in a str (a regex's search)
    max_digits: int
    max_exponent: int
    max_count_digits: int
    max_depth: int
    max_int_bits: int


@dataclass(frozen=True)
class OrderParser:
    """``parse(raw)`` from a dict, ``parse_json(text)`` from JSON text; ``fast(raw, clean)`` and
    ``fast_typed(text)`` the fast paths alone (an exception where they give up); ``struct`` the
    msgspec struct of the typed path (to decode an order inside a larger document) and
    ``from_struct(s)`` its post-pass (the validated order, or an exception where it gives up);
    ``sources`` the generated code."""

    parse: Callable[[Any], dict[str, Any]]
    parse_json: Callable[[str | bytes], dict[str, Any]]
    fast: Callable[[dict[str, Any], bool], dict[str, Any]]
    fast_typed: Callable[[str | bytes], dict[str, Any]]
    struct: type[msgspec.Struct]
    from_struct: Callable[[msgspec.Struct], dict[str, Any]]
    sources: dict[str, str]


class _Fallback(Exception):
    """Not a shape the fast path handles: the reference path decides."""


_CACHED = 4096  # entries per cache of converted strings (money, dates)
_SMALL_INT_BITS = 63  # pydantic writes a small int in a text field as str(int) (coerce_numbers_to_str)


def order_parser(model: type[BaseModel], c: Coercions, reference: Callable[[Any], dict[str, Any]],
                 error: type[Exception]) -> OrderParser:
    """The fast parser of ``model``: the generated fast path, ``reference`` (raising ``error``) for the rest."""
    fallback = _Fallback()
    surrogate = c.surrogate
    to_decimal, max_depth, max_int_bits = c.to_decimal, c.max_depth, c.max_int_bits
    scalars = frozenset((str, int, float, Decimal))

    def coerced(coerce, value: Any) -> Any:
        """``coerce(value)`` (a model coercion) for a JSON scalar; anything else or a refusal falls back."""
        if value.__class__ not in scalars:
            raise fallback
        try:
            return coerce(value)
        except ValueError:
            raise fallback from None

    def text(value: Any) -> str:
        """A text field's value that is not a clean ``str``: a small int as pydantic writes it;
        anything else (a float, a bool, text with a lone surrogate) falls back."""
        if value.__class__ is int and value.bit_length() <= _SMALL_INT_BITS:
            return str(value)
        raise fallback

    # A caller's dict: every text (keys too) is checked for lone surrogates, maps and lists are copied
    # (the caller keeps its own; the reference's dump builds new ones too).

    def key_ok(key: Any) -> None:
        if key.__class__ is not str or not key.isascii() and surrogate(key):
            raise fallback

    def value_of(value: Any, depth: int) -> Any:
        """A free-form JSON value (a map's entry, an extra field) as ``_normalise`` leaves it, copied."""
        kind = value.__class__
        if kind is str:
            if not value.isascii() and surrogate(value):
                raise fallback
            return value
        if kind is dict:
            return map_of(value, depth)
        if kind is list:
            if depth >= max_depth:
                raise fallback
            return [value_of(item, depth + 1) for item in value]
        if kind is int:
            if value.bit_length() > max_int_bits:
                raise fallback
            return value
        if kind is Decimal or kind is float:
            return coerced(to_decimal, value)
        if value is None or kind is bool:
            return value
        raise fallback  # a tuple, a datetime, a subclass...: whatever pydantic's dump makes of it

    def map_of(value: dict[str, Any], depth: int) -> dict[str, Any]:
        if depth >= max_depth:
            raise fallback
        copy = {}
        for key, item in value.items():
            if key.__class__ is not str or not key.isascii() and surrogate(key):  # key_ok, inline
                raise fallback
            if item.__class__ is str and (item.isascii() or not surrogate(item)):
                copy[key] = item
            else:
                copy[key] = value_of(item, depth + 1)
        return copy

    def free_map(value: Any, depth: int) -> dict[str, Any]:
        """A ``dict[str, Any]`` field (``metadata``): ``[]``/None is empty, an object is copied."""
        if value.__class__ is dict:
            return map_of(value, depth) if value else {}
        if value is None or (value.__class__ is list and not value):
            return {}
        raise fallback

    def text_map(value: Any, depth: int) -> dict[str, str]:
        """A ``dict[str, str]`` field (``variation_list``): text values only, else the reference."""
        if value.__class__ is dict:
            return text_map_of(value, depth)
        if value is None or (value.__class__ is list and not value):
            return {}
        raise fallback

    def text_map_of(value: dict[str, Any], depth: int) -> dict[str, str]:
        for key, item in value.items():
            if key.__class__ is not str or item.__class__ is not str or not (key.isascii() and item.isascii()) \
                    and (surrogate(key) or surrogate(item)):
                raise fallback
        return dict(value)

    def map_list(value: Any, depth: int) -> list[dict[str, Any]]:
        """A ``list[dict[str, Any]]`` field (``discount_list``)."""
        if value.__class__ is list:
            if depth >= max_depth:
                raise fallback
            out = []
            for item in value:
                if item.__class__ is not dict:
                    raise fallback
                out.append(map_of(item, depth + 1))
            return out
        if value is None:
            return []
        raise fallback

    # What msgspec decoded is the parser's own (nobody else holds it) and clean: its keys are str
    # without lone surrogates, its floats Decimals.  Its maps and lists are checked and kept, not copied.

    def checked_value(value: Any, depth: int) -> Any:
        """A clean free-form value, within the bounds (the same object), or _Fallback."""
        kind = value.__class__
        if kind is str or value is None or kind is bool:
            return value
        if kind is dict:
            return checked_map(value, depth)
        if kind is list:
            if depth >= max_depth:
                raise fallback
            for item in value:
                if item.__class__ is not str:
                    checked_value(item, depth + 1)
            return value
        if kind is int:
            if value.bit_length() > max_int_bits:
                raise fallback
            return value
        if kind is Decimal:
            return coerced(to_decimal, value)  # the same Decimal, if within the bounds
        raise fallback

    def checked_map(value: dict[str, Any], depth: int) -> dict[str, Any]:
        if depth >= max_depth:
            raise fallback
        for item in value.values():
            if item.__class__ is not str:
                checked_value(item, depth + 1)
        return value

    def clean_free_map(value: Any, depth: int) -> dict[str, Any]:
        if value.__class__ is dict:
            return checked_map(value, depth)
        if value is None or (value.__class__ is list and not value):
            return {}
        raise fallback

    def clean_text_map(value: Any, depth: int) -> dict[str, str]:
        if value.__class__ is dict:
            return clean_text_map_of(value, depth)
        if value is None or (value.__class__ is list and not value):
            return {}
        raise fallback

    def clean_text_map_of(value: dict[str, Any], depth: int) -> dict[str, str]:
        for item in value.values():
            if item.__class__ is not str:
                raise fallback
        return value

    def clean_map_list(value: Any, depth: int) -> list[dict[str, Any]]:
        if value.__class__ is list:
            if depth >= max_depth:
                raise fallback
            for item in value:
                if item.__class__ is not dict:
                    raise fallback
                checked_map(item, depth + 1)
            return value
        if value is None:
            return []
        raise fallback

    def clean_extras(raw: dict[str, Any], out: dict[str, Any], declared: frozenset[str], depth: int) -> None:
        for key, value in raw.items():
            if key not in declared:
                out[key] = checked_value(value, depth + 1)

    def extras(raw: dict[str, Any], out: dict[str, Any], declared: frozenset[str], depth: int) -> None:
        for key, value in raw.items():
            if key not in declared:
                key_ok(key)
                out[key] = value_of(value, depth + 1)

    # Caches shared by every order (their values are immutable, so orders can share them): the
    # Decimal of a money string that converted directly, the int of a digit string (a count), the
    # datetime (or None) of a date string.
    # Bounded: a cache past _CACHED entries starts afresh before the next order.
    decimals: dict[str, Decimal] = {}
    dates: dict[str, _dt.datetime | None] = {}
    counts: dict[str, int] = {}  # a digit string's int

    def caches() -> dict[str, _dt.datetime | None]:
        if len(decimals) > _CACHED:
            decimals.clear()
        if len(counts) > _CACHED:
            counts.clear()
        if len(dates) > _CACHED:
            dates.clear()
        return dates

    namespace = {
        "_FALLBACK": fallback, "_MISSING": object(), "_Decimal": Decimal, "_InvalidOperation": InvalidOperation,
        "_surrogate": surrogate, "_coerced": coerced, "_to_decimal": c.to_decimal, "_to_int": c.to_int,
        "_to_datetime": c.to_datetime, "_text": text, "_free_map": free_map, "_text_map": text_map,
        "_map_list": map_list, "_extras": extras, "_datetime": _dt.datetime, "_UTC": _dt.timezone.utc,
        "_DECIMALS": decimals, "_COUNTS": counts, "_map_of": map_of, "_text_map_of": text_map_of,
    }
    checked, checked_source = _generate(model, c, namespace, clean=False)
    fast_clean, clean_source = _generate(model, c, dict(namespace, _free_map=clean_free_map, _text_map=clean_text_map,
                                                        _map_list=clean_map_list, _extras=clean_extras, _map_of=checked_map,
                                                        _text_map_of=clean_text_map_of), clean=True)

    structs = _structs(model, c)
    typed_decode = msgspec.json.Decoder(structs[model], float_hook=Decimal).decode
    typed, typed_source = _generate_typed(model, c, structs, dict(namespace, _asdict=msgspec.structs.asdict,
                                                                   _checked_map=checked_map))

    def parse(raw: Any) -> dict[str, Any]:
        """Validate ``raw`` (a dict) into the runtime representation; ``error`` if it does not fit.
        Never changes ``raw``."""
        if raw.__class__ is dict:
            try:
                return checked(raw, 0, caches())
            except Exception:  # _Fallback, or any surprise: the reference decides (result or message)
                pass
        return reference(raw)

    def parse_json(text: str | bytes) -> dict[str, Any]:
        """Validate JSON text (JSON floats exact, as ``load_json``); ``error`` if it is not JSON or does not fit."""
        try:  # typed: msgspec checks the types as it decodes (no unknown field, text as text, money as strings)
            return typed(typed_decode(text), 0, caches())
        except Exception:
            pass
        try:  # untyped: any shape, the fast path on the decoded dicts
            raw = _decode(text)
        except Exception:
            try:
                raw = json.loads(text, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                raise error(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
            except RecursionError:
                raise error("invalid JSON: nested too deeply") from None
            except ValueError as exc:  # an int past Python's digit limit; bytes that are not UTF-8/16/32
                raise error(f"invalid JSON: {exc}") from None
            return parse(raw)
        if raw.__class__ is dict:
            try:
                return fast_clean(raw, 0, caches())  # msgspec decoded it: no lone surrogate anywhere
            except Exception:
                pass
        return reference(raw)

    def fast(raw: dict[str, Any], clean: bool = False) -> dict[str, Any]:
        return (fast_clean if clean else checked)(raw, 0, caches())

    def fast_typed(text: str | bytes) -> dict[str, Any]:
        return typed(typed_decode(text), 0, caches())

    def from_struct(s: msgspec.Struct) -> dict[str, Any]:
        return typed(s, 0, caches())

    return OrderParser(parse, parse_json, fast, fast_typed, structs[model], from_struct,
                       {"checked": checked_source, "clean": clean_source, "typed": typed_source})


# --- generating the model functions ------------------------------------------------------------------


def _kind(model: type[BaseModel], name: str, info: Any, c: Coercions) -> tuple[str, Any]:
    """How the fast path handles one declared field, from its annotation, validators and default."""
    annotation = info.annotation
    before = tuple(m.func for m in info.metadata if isinstance(m, BeforeValidator))
    other = [m for m in info.metadata if not isinstance(m, BeforeValidator)]
    origin, args = get_origin(annotation), get_args(annotation)
    optional = origin in (Union, type(int | None)) and len(args) == 2 and type(None) in args
    inner = next((a for a in args if a is not type(None)), None) if optional else None
    factory = info.default_factory
    kind: tuple[str, Any] | None = None
    if other or info.alias or info.validation_alias is not None:
        kind = None
    elif optional and inner is str and not before and info.default is None:
        kind = ("text", None)
    elif optional and inner is Decimal and before == (c.to_decimal,) and info.default is None:
        kind = ("money", None)
    elif optional and inner is int and before == (c.to_int,) and info.default is None:
        kind = ("count", None)
    elif optional and inner is _dt.datetime and before == (c.to_datetime,) and info.default is None:
        kind = ("time", None)
    elif annotation is str and before == (c.folder,) and isinstance(info.default, str):
        kind = ("folder", info.default)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and before == (c.empty_map,) \
            and factory is annotation:
        kind = ("model", annotation)
    elif annotation == dict[str, Any] and before == (c.empty_map,) and factory is not None and factory() == {}:
        kind = ("map", None)
    elif annotation == dict[str, str] and before == (c.empty_map,) and factory is not None and factory() == {}:
        kind = ("text_map", None)
    elif annotation == list[dict[str, Any]] and before == (c.empty_list,) and factory is not None \
            and factory() == []:
        kind = ("map_list", None)
    elif origin is list and len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel) \
            and before == (c.empty_list,) and factory is not None and factory() == []:
        kind = ("models", args[0])
    if kind is None:
        raise TypeError(f"fastorder: no fast path for {model.__name__}.{name} ({annotation!r}, {info.metadata}); "
                        f"teach fastorder._kind this kind of field")
    return kind


def _models(model: type[BaseModel], c: Coercions, seen: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """``model`` and every model its fields hold, innermost first."""
    for field, info in model.model_fields.items():
        kind, arg = _kind(model, field, info, c)
        if kind in ("model", "models") and arg not in seen:
            _models(arg, c, seen)
    if model not in seen:
        seen.append(model)
    return seen


def _generate(root: type[BaseModel], c: Coercions, helpers: dict[str, Any], clean: bool) -> tuple[Any, str]:
    models = _models(root, c, [])
    fn = {model: f"_{'clean' if clean else 'checked'}_{model.__name__}" for model in models}
    namespace = dict(helpers)
    sources = []
    for model in models:
        source, consts = _model_source(model, fn, c, clean)
        namespace.update(consts)
        sources.append(source)
    source = "\n".join(sources)
    exec(compile(source, f"<fastorder {fn[root]}>", "exec"), namespace)  # noqa: S102 -- our own source
    for model in models:
        if _flat(model, c):
            namespace[f"_EMPTY{fn[model]}"] = namespace[fn[model]]({}, 0, {})
    return namespace[fn[root]], source


def _flat(model: type[BaseModel], c: Coercions) -> bool:
    """Whether every field of ``model`` is a scalar (text, number, date, folder): its dump of ``{}``
    holds only immutable values (None, the folder's default), so a shallow copy of it is a fresh one."""
    return all(_kind(model, field, info, c)[0] in ("text", "money", "count", "time", "folder")
               for field, info in model.model_fields.items())


def _model_source(model: type[BaseModel], fn: dict[type[BaseModel], str], c: Coercions,
                  clean: bool) -> tuple[str, dict[str, Any]]:
    """The source of ``<fn>(raw, depth, dates)``: ``raw`` (the model's dict at ``depth``) as the
    reference dumps it, or _Fallback.  ``dates`` caches date strings (shared by every order: bounded).
    ``clean``: msgspec decoded the text, so it holds no lone surrogate and needs no check."""
    name = fn[model]
    consts: dict[str, Any] = {}
    lines = [f"def {name}(raw, depth, dates):",
             "    if raw.__class__ is not dict:",
             "        raise _FALLBACK",
             "    get = raw.get",
             "    inner = depth + 1"]
    add = lines.append
    unclean = "" if clean else " or not {v}.isascii() and _surrogate({v})"
    count_limit = 10 ** c.max_count_digits
    fields = []
    for index, (field, info) in enumerate(model.model_fields.items()):
        kind, arg = _kind(model, field, info, c)
        v = f"v{index}"
        fields.append((field, v))
        add(f"    {v} = get({field!r})")
        if kind == "text":  # str or None; anything else through _text
            if clean:
                add(f"    if {v}.__class__ is not str and {v} is not None:")
            else:
                add(f"    if {v} is not None and ({v}.__class__ is not str{unclean.format(v=v)}):")
            add(f"        {v} = _text({v})")
        elif kind == "money":  # to_decimal; a short string directly (its digits are at most its length)
            add(f"    if {v}.__class__ is str:")  # a string seen before: its Decimal (immutable, shared)
            add(f"        number = _DECIMALS.get({v})")
            add("        if number is not None:")
            add(f"            {v} = number")
            add(f"        elif len({v}) <= {c.max_digits}:")
            add("            try:")
            add(f"                number = _Decimal({v})")  # Decimal() ignores surrounding whitespace, as to_decimal's strip
            add("            except _InvalidOperation:")
            add(f"                {v} = _coerced(_to_decimal, {v})")  # "" and "  " are None, the rest refused
            add("            else:")
            add("                if not number.is_finite() or number and not "
                f"{-c.max_exponent} <= number.adjusted() <= {c.max_exponent}:")
            add("                    raise _FALLBACK")
            add(f"                _DECIMALS[{v}] = number")
            add(f"                {v} = number")
            add("        else:")
            add(f"            {v} = _coerced(_to_decimal, {v})")
            add(f"    elif {v} is not None:")
            add(f"        {v} = _coerced(_to_decimal, {v})")
        elif kind == "count":  # to_int; a short digit string or an int within the count bound directly
            add(f"    if {v}.__class__ is str and (number := _COUNTS.get({v})) is not None:")  # seen before
            add(f"        {v} = number")  # (a get, not `in` then [...]: another thread may empty the cache)
            add(f"    elif {v}.__class__ is str and len({v}) <= {c.max_count_digits} and {v}.isdigit() "
                f"and {v}.isascii():")
            add(f"        {v} = _COUNTS[{v}] = int({v})")
            add(f"    elif {v} is not None and not ({v}.__class__ is int and "
                f"{-count_limit} < {v} < {count_limit}):")
            add(f"        {v} = _coerced(_to_int, {v})")
        elif kind == "time":  # to_datetime, once per distinct string of the order; a UTC datetime stays
            add(f"    if {v}.__class__ is str:")
            add(f"        moment = dates.get({v}, _MISSING)")
            add("        if moment is _MISSING:")
            add(f"            moment = dates[{v}] = _coerced(_to_datetime, {v})")
            add(f"        {v} = moment")
            add(f"    elif {v} is not None and ({v}.__class__ is not _datetime or {v}.tzinfo is not _UTC):")
            add("        raise _FALLBACK")
        elif kind == "folder":  # the folder validator: None and "" are the default
            consts[f"_default{index}"] = arg
            add(f"    if {v} is None or {v} == '':")
            add(f"        {v} = _default{index}")
            add(f"    elif {v}.__class__ is not str{unclean.format(v=v)}:")
            add("        raise _FALLBACK")
        elif kind == "model":  # empty_map: None and [] are the model's defaults
            add(f"    if {v} is None or ({v}.__class__ is list and not {v}):")
            add(f"        {v} = {{**_EMPTY{fn[arg]}}}" if _flat(arg, c) else f"        {v} = {fn[arg]}({{}}, inner, dates)")
            add("    else:")
            add(f"        {v} = {fn[arg]}({v}, inner, dates)")
        elif kind in ("map", "text_map"):  # an object (the common case) without a call of _free_map/_text_map
            add(f"    if {v}.__class__ is dict:")
            add(f"        {v} = {'_map_of' if kind == 'map' else '_text_map_of'}({v}, inner) if {v} else {{}}")
            add(f"    elif {v} is None or ({v}.__class__ is list and not {v}):")
            add(f"        {v} = {{}}")
            add("    else:")
            add("        raise _FALLBACK")
        elif kind == "map_list":
            add(f"    {v} = _map_list({v}, inner)")
        elif kind == "models":  # empty_list: None is []
            add(f"    if {v}.__class__ is list:")
            add(f"        if inner >= {c.max_depth}:")
            add("            raise _FALLBACK")
            add(f"        {v} = [{fn[arg]}(x, inner + 1, dates) for x in {v}]")
            add(f"    elif {v} is None:")
            add(f"        {v} = []")
            add("    else:")
            add("        raise _FALLBACK")
    body = ", ".join(f"{field!r}: {v}" for field, v in fields)
    consts[f"_declared{name}"] = frozenset(model.model_fields)
    add(f"    out = {{{body}}}")
    add(f"    if not raw.keys() <= _declared{name}:")  # extra fields, after the declared ones in input order
    add(f"        _extras(raw, out, _declared{name}, depth)")
    add("    return out")
    return "\n".join(lines) + "\n", consts


# --- the typed path: msgspec structs generated from the same models -----------------------------------


def _structs(root: type[BaseModel], c: Coercions) -> dict[type[BaseModel], type[msgspec.Struct]]:
    """A msgspec struct per model, typed for what the typed path takes without a question: text,
    money, counts and dates as JSON strings (a count also as an int), records as objects or ``[]``,
    maps as objects or ``[]``.  Unknown fields are refused: an order with extras takes the untyped path."""
    structs: dict[type[BaseModel], type[msgspec.Struct]] = {}
    for model in _models(root, c, []):
        fields: list[tuple[str, Any, Any]] = []
        for name, info in model.model_fields.items():
            kind, arg = _kind(model, name, info, c)
            if kind in ("text", "money", "time", "folder"):
                fields.append((name, str | None, None))
            elif kind == "count":
                fields.append((name, int | str | None, None))
            elif kind == "model":
                fields.append((name, structs[arg] | list[Any] | None, None))  # missing: as null, the empty record
            elif kind == "map":
                fields.append((name, dict[str, Any] | list[Any] | None, msgspec.field(default_factory=dict)))
            elif kind == "text_map":
                fields.append((name, dict[str, str] | list[Any] | None, msgspec.field(default_factory=dict)))
            elif kind == "map_list":
                fields.append((name, list[dict[str, Any]] | None, msgspec.field(default_factory=list)))
            elif kind == "models":
                fields.append((name, list[structs[arg]] | None, msgspec.field(default_factory=list)))
        structs[model] = msgspec.defstruct(f"{model.__name__}JSON", fields, forbid_unknown_fields=True)
    return structs


def _generate_typed(root: type[BaseModel], c: Coercions, structs: dict[type[BaseModel], type[msgspec.Struct]],
                    helpers: dict[str, Any]) -> tuple[Any, str]:
    """``_typed_<Model>(s, depth, dates)``: the dict of a decoded struct as the reference dumps it, or
    _Fallback.  msgspec checked the struct's types as it decoded (text is a str without a lone
    surrogate, or None); what is left: numbers from strings (and their bounds), dates, defaults for
    null and ``[]``, and the bounds of free-form maps (kept as decoded: the parser owns them)."""
    models = _models(root, c, [])
    fn = {model: f"_typed_{model.__name__}" for model in models}
    namespace = dict(helpers)
    sources = []
    count_limit = 10 ** c.max_count_digits
    for model in models:
        lines = [f"def {fn[model]}(s, depth, dates):", "    out = _asdict(s)", "    inner = depth + 1"]
        add = lines.append
        for index, (field, info) in enumerate(model.model_fields.items()):
            kind, arg = _kind(model, field, info, c)
            get = f"    v = out[{field!r}]"
            put = f"out[{field!r}]"
            if kind in ("money", "time", "folder"):
                add(get)
            if kind == "money":
                add("    if v is not None:")
                add("        number = _DECIMALS.get(v)")
                add("        if number is not None:")
                add(f"            {put} = number")
                add(f"        elif len(v) <= {c.max_digits}:")
                add("            try:")
                add("                number = _Decimal(v)")
                add("            except _InvalidOperation:")
                add(f"                {put} = _coerced(_to_decimal, v)")
                add("            else:")
                add(f"                if not number.is_finite() or number and not {-c.max_exponent} <= "
                    f"number.adjusted() <= {c.max_exponent}:")
                add("                    raise _FALLBACK")
                add(f"                {put} = _DECIMALS[v] = number")
                add("        else:")
                add(f"            {put} = _coerced(_to_decimal, v)")
            elif kind == "count":
                add(get)
                add("    if v.__class__ is str:")
                add("        number = _COUNTS.get(v)")
                add("        if number is not None:")
                add(f"            {put} = number")
                add(f"        elif len(v) <= {c.max_count_digits} and v.isdigit() and v.isascii():")
                add(f"            {put} = _COUNTS[v] = int(v)")
                add("        else:")
                add(f"            {put} = _coerced(_to_int, v)")
                add(f"    elif v is not None and (v.__class__ is not int or not {-count_limit} < v < {count_limit}):")
                add("        raise _FALLBACK")
            elif kind == "time":
                add("    if v is not None:")
                add("        moment = dates.get(v, _MISSING)")
                add("        if moment is _MISSING:")
                add("            moment = dates[v] = _coerced(_to_datetime, v)")
                add(f"        {put} = moment")
            elif kind == "folder":
                namespace[f"_default_{fn[model]}_{index}"] = arg
                add("    if v is None or v == '':")
                add(f"        {put} = _default_{fn[model]}_{index}")
            elif kind == "model":
                namespace[f"_S{fn[arg]}"] = structs[arg]
                add(get)
                if _flat(arg, c):  # the empty record's dump, copied
                    add("    if v.__class__ is list:")
                    add("        if v:")
                    add("            raise _FALLBACK")
                    add(f"        {put} = {{**_EMPTY{fn[arg]}}}")
                    add("    elif v is None:")
                    add(f"        {put} = {{**_EMPTY{fn[arg]}}}")
                    add("    else:")
                    add(f"        {put} = {fn[arg]}(v, inner, dates)")
                else:
                    add("    if v.__class__ is list:")
                    add("        if v:")
                    add("            raise _FALLBACK")
                    add(f"        v = _S{fn[arg]}()")
                    add("    elif v is None:")
                    add(f"        v = _S{fn[arg]}()")
                    add(f"    {put} = {fn[arg]}(v, inner, dates)")
            elif kind in ("map", "text_map"):
                add(get)
                add("    if v.__class__ is list:")
                add("        if v:")
                add("            raise _FALLBACK")
                add(f"        {put} = {{}}")
                add("    elif v is None:")
                add(f"        {put} = {{}}")
                if kind == "map":
                    add("    elif v:")
                    add("        _checked_map(v, inner)")
            elif kind == "map_list":
                add(get)
                add("    if v is None:")
                add(f"        {put} = []")
                add("    elif v:")
                add(f"        if inner >= {c.max_depth}:")
                add("            raise _FALLBACK")
                add("        for x in v:")
                add("            _checked_map(x, inner + 1)")
            elif kind == "models":
                add(get)
                add("    if v is None:")
                add(f"        {put} = []")
                add("    elif v:")
                add(f"        if inner >= {c.max_depth}:")
                add("            raise _FALLBACK")
                add(f"        {put} = [{fn[arg]}(x, inner + 1, dates) for x in v]")
            # text: msgspec gave a str or None, without a lone surrogate
        add("    return out")
        sources.append("\n".join(lines) + "\n")
    source = "\n".join(sources)
    exec(compile(source, f"<fastorder {fn[root]}>", "exec"), namespace)  # noqa: S102 -- our own source
    for model in models:
        if _flat(model, c):
            namespace[f"_EMPTY{fn[model]}"] = namespace[fn[model]](structs[model](), 0, {})
    return namespace[fn[root]], source
