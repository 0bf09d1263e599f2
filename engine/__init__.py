"""ruledesk's engine: rule checking, compilation and evaluation, order models, catalogues.

Embedding::

    from ruledesk.engine import Engine
    engine = Engine.from_paths("rules.d")
    for decision in engine.process({"event": "Order is Imported", "order": {...}}).decisions:
        print(decision.fired)
"""

from ruledesk.engine.lang.ruleset import Ruleset, RulesetError
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.engine.model.context import ActionContext, ActionError, Event
from ruledesk.engine.run.engine import ActionRecord, Decision, Engine, EventError, default_actions, default_events
from ruledesk.grammar.diagnostics import Diagnostic

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
