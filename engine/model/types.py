"""The static types the checker gives to rule expressions, and their derivation from pydantic models."""

from __future__ import annotations

import datetime as _dt
import decimal
import types as _pytypes
import typing
from dataclasses import dataclass, field

from pydantic import BaseModel


class Type:
    """Base of every static type.  Types are immutable and compared by value."""

    name = "?"

    def __str__(self) -> str:
        return self.name

    def is_any(self) -> bool:
        return False


@dataclass(frozen=True)
class Scalar(Type):
    name: str

    def __str__(self) -> str:
        return self.name


STRING = Scalar("string")
NUMBER = Scalar("number")
BOOL = Scalar("bool")
DATETIME = Scalar("datetime")
DURATION = Scalar("duration")
NULL = Scalar("null")


@dataclass(frozen=True)
class AnyType(Type):
    """A value whose type is only known at run time (metadata values, untyped payloads)."""

    name: str = "any"

    def is_any(self) -> bool:
        return True


ANY = AnyType()


@dataclass(frozen=True)
class ListOf(Type):
    element: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"list[{self.element}]"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class MapOf(Type):
    """A map with free-form string keys (``metadata``, ``variation_list``, ``checkout_data``)."""

    value: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"map[{self.value}]"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Record(Type):
    """A map with known fields: the order, an item, an address, an event payload."""

    name: str
    fields: dict[str, Type] = field(default_factory=dict)
    # Type of keys that are not declared; None means an unknown key is a check error.
    extra: Type | None = None
    # Fields that exist but rules may not read (secret settings), with the reason.
    hidden: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        return hash(("record", self.name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and other.name == self.name and other.fields == self.fields


def compatible(expected: Type, actual: Type) -> bool:
    """Whether a value of type ``actual`` may stand where ``expected`` is wanted."""
    if expected.is_any() or actual.is_any() or actual == NULL:
        return True
    if isinstance(expected, ListOf) and isinstance(actual, ListOf):
        return compatible(expected.element, actual.element)
    if isinstance(expected, (MapOf, Record)) and isinstance(actual, (MapOf, Record)):
        return True
    return expected == actual


def unify(a: Type, b: Type) -> Type:
    """The common type of two values (list elements, branches); ANY when they differ."""
    if a == b:
        return a
    if a == NULL:
        return b
    if b == NULL:
        return a
    if isinstance(a, ListOf) and isinstance(b, ListOf):
        return ListOf(unify(a.element, b.element))
    return ANY


# --- pydantic models -> static types --------------------------------------------------------

_SCALARS: dict[object, Type] = {
    str: STRING,
    int: NUMBER,
    float: NUMBER,
    decimal.Decimal: NUMBER,
    bool: BOOL,
    _dt.datetime: DATETIME,
    _dt.date: DATETIME,
    _dt.timedelta: DURATION,
    typing.Any: ANY,
    object: ANY,
}

_record_cache: dict[type, Record] = {}


def type_of_annotation(annotation: object) -> Type:
    """Static type of a python annotation as used in a pydantic model field."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return record_of_model(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_of_annotation(args[0])
    if origin in (typing.Union, _pytypes.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return type_of_annotation(members[0])
        kinds = {type_of_annotation(m) for m in members}
        return kinds.pop() if len(kinds) == 1 else ANY
    if origin is typing.Literal:
        kinds = {type_of_annotation(type(a)) for a in args}
        return kinds.pop() if len(kinds) == 1 else ANY
    if origin in (list, tuple, set, frozenset, typing.Sequence):
        return ListOf(type_of_annotation(args[0]) if args else ANY)
    if origin in (dict, typing.Mapping):
        return MapOf(type_of_annotation(args[1]) if len(args) == 2 else ANY)
    return ANY


def record_of_model(model: type[BaseModel], name: str | None = None) -> Record:
    """The Record type of a pydantic model: its fields (by alias), extras allowed if the model allows them."""
    cached = _record_cache.get(model)
    if cached is not None:
        return cached
    record = Record(name or model.__name__)
    _record_cache[model] = record  # before recursing: models may refer to themselves
    for field_name, info in model.model_fields.items():
        record.fields[info.alias or field_name] = type_of_annotation(info.annotation)
    if model.model_config.get("extra") == "allow":
        object.__setattr__(record, "extra", ANY)
    return record
