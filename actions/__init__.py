"""The built-in actions and events: importing this package registers every core and integration action, event and job handler."""

from ruledesk.engine.model import events
from ruledesk.engine.model.catalogue import ACTIONS, EVENTS, ActionSpec, Catalogue, EventSpec
from ruledesk.engine.model.jobs import HANDLERS, JobHandlers

from ruledesk.actions import folders, order, podos, shipments, split, stores, webhook


def builtin_events() -> Catalogue[EventSpec]:
    """A copy of the built-in event catalogue (core and integrations)."""
    return EVENTS.copy()


def builtin_actions() -> Catalogue[ActionSpec]:
    """A copy of the built-in action catalogue; register your own actions on it."""
    return ACTIONS.copy()


def builtin_handlers() -> JobHandlers:
    """A copy of the built-in job handlers (one per job kind of the built-in external actions)."""
    return HANDLERS.copy()


__all__ = ["builtin_actions", "builtin_handlers", "builtin_events", "events", "folders", "order", "podos", "shipments",
<<<<<<< HEAD
           "split", "stores"]
=======
           "webhook"]
>>>>>>> webhook
