"""ruledesk's engine: rule checking, compilation and evaluation, order models, catalogues.

Embedding::

    from ruledesk.engine import Engine
    engine = Engine.from_paths("rules.d")
    for decision in engine.process({"event": "Order is Imported", "order": {...}}):
        print(decision.fired)
"""

from .catalogue import ActionSpec, Catalogue, EventSpec
from .diagnostics import Diagnostic
from .engine import ActionRecord, Decision, Engine, EventError, default_actions, default_events
from .ruleset import Ruleset, RulesetError
from .runtime import ActionContext, ActionError, Event

__all__ = [
    "ActionContext",
    "ActionError",
    "ActionRecord",
    "ActionSpec",
    "Catalogue",
    "Decision",
    "Diagnostic",
    "Engine",
    "Event",
    "EventError",
    "EventSpec",
    "Ruleset",
    "RulesetError",
    "default_actions",
    "default_events",
]
