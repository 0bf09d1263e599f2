"""Event and action catalogues: registries of what rules may name, copied by every Engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ruledesk.engine.model.context import ActionContext
from ruledesk.grammar.diagnostics import closest



class NoPayload(BaseModel):
    """Payload of an event that carries nothing beyond the order."""

    model_config = ConfigDict(extra="allow")


class NoParams(BaseModel):
    """Parameters of an action that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class EventSpec:
    """An event rules can bind to with ``when "Name"``."""

    name: str
    payload: type[BaseModel] = NoPayload
    description: str = ""
    source: str = "core"


# A static check of an action's literal parameters: gets {param: python value} for the
# parameters written as literals and returns (param, message, suggestion-or-None) problems.
StaticCheck = Callable[[dict[str, Any]], list[tuple[str, str, "str | None"]]]


@dataclass(frozen=True)
class ActionSpec:
    """An action rules can call in ``then``.

    ``run(ctx, params)`` performs it: ``params`` is an instance of ``self.params``; it may
    change ``ctx.order`` / ``ctx.item``, emit events through ``ctx.emit`` (only those named in
    ``emits``) and return a dict of details for the decision; it never does I/O.  An action with
    a ``job`` kind is external (email, webhooks, podOS): running it records a job of that kind
    with its rendered parameters (status "scheduled", or "dry-run" under dry run), which a job
    runner performs after the result is committed; its ``run``, if any, does only what belongs
    to the moment of scheduling (e.g. emitting "Order Scheduled to podOS").  ``mutates_order``
    tells the engine the order may have changed, so later rules' conditions are evaluated afresh.
    """

    name: str
    params: type[BaseModel] = NoParams
    run: Callable[[ActionContext, Any], "dict[str, Any] | None"] | None = None
    description: str = ""
    job: str | None = None  # the job kind of an external action; None: an order action
    mutates_order: bool = True
    emits: tuple[str, ...] = ()
    static_check: StaticCheck | None = None
    source: str = "core"
    needs_item: bool = False  # acts on the current item: only allowed inside a `for` block
    # The order's top-level fields the action may change; None means it can't say (any field).
    touches: tuple[str, ...] | None = None

    @property
    def external(self) -> bool:
        """Whether the action leaves the process (it records a job instead of running inline)."""
        return self.job is not None


T = TypeVar("T", EventSpec, ActionSpec)


@dataclass
class Catalogue(Generic[T]):
    """A case-insensitive registry of specs by name.  ``copy()`` gives an engine its own."""

    kind: str
    _specs: dict[str, T] = field(default_factory=dict)

    def register(self, spec: T, *, replace: bool = False) -> T:
        key = spec.name.casefold()
        if key in self._specs and not replace:
            raise ValueError(f"{self.kind} {spec.name!r} is already registered")
        self._specs[key] = spec
        return spec

    def get(self, name: str) -> T | None:
        return self._specs.get(name.casefold())

    def __getitem__(self, name: str) -> T:
        spec = self.get(name)
        if spec is None:
            raise KeyError(name)
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._specs

    def __iter__(self) -> Iterator[T]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name.casefold()))

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return [spec.name for spec in self]

    def suggest(self, name: str) -> list[str]:
        """The registered names closest to ``name``, best first."""
        return closest(name, self.names())

    def copy(self) -> "Catalogue[T]":
        return Catalogue(self.kind, dict(self._specs))


EVENTS: Catalogue[EventSpec] = Catalogue("event")
ACTIONS: Catalogue[ActionSpec] = Catalogue("action")


def event(name: str, payload: type[BaseModel] = NoPayload, description: str = "", source: str = "core") -> EventSpec:
    """Register an event in the default catalogue."""
    return EVENTS.register(EventSpec(name, payload, description, source))


def action(
    name: str,
    params: type[BaseModel] = NoParams,
    *,
    description: str = "",
    job: str | None = None,
    mutates_order: bool = True,
    emits: tuple[str, ...] = (),
    static_check: StaticCheck | None = None,
    source: str = "core",
    needs_item: bool = False,
    touches: tuple[str, ...] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn(ctx, params)`` as an action in the default catalogue."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        # the docstring's first paragraph, however many lines it is wrapped over
        summary = description or " ".join(line.strip() for line in
                                          (fn.__doc__ or "").strip().split("\n\n", 1)[0].splitlines())
        ACTIONS.register(
            ActionSpec(name, params, fn, summary, job, mutates_order, emits, static_check, source, needs_item,
                       touches)
        )
        return fn

    return register


# fn(order, payload, store name, event id) -> the jobs an event records for itself once its rules
# have run, whatever they did (a copied order's new shipment is passed back to its original).
# Keys are event names, case-folded.  Engines take a copy (``Engine(followups=...)``).
Followup = Callable[[dict[str, Any], dict[str, Any], str, str], list[Any]]
FOLLOWUPS: dict[str, list[Followup]] = {}


def followup(event_name: str) -> Callable[[Followup], Followup]:
    """Decorator: register ``fn`` to record jobs after every processed ``event_name`` event."""

    def register(fn: Followup) -> Followup:
        FOLLOWUPS.setdefault(event_name.casefold(), []).append(fn)
        return fn

    return register

