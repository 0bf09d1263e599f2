"""The built-in actions and events: importing this package registers every core and integration action, event and job handler."""

from ruledesk.engine.model import events
from ruledesk.engine.model.catalogue import ACTIONS, EVENTS, ActionSpec, Catalogue, EventSpec
from ruledesk.engine.model.config import Config
from ruledesk.engine.model.jobs import HANDLERS, JobHandlers

from ruledesk.actions import email, folders, order, podos, shipments, split, stores, webhook


def builtin_events() -> Catalogue[EventSpec]:
    """A copy of the built-in event catalogue (core and integrations)."""
    return EVENTS.copy()


def builtin_actions(config: Config | None = None) -> Catalogue[ActionSpec]:
    """A copy of the built-in action catalogue; register your own actions on it.  With ``config``,
    its actions check what they can against it (Send Email: its templates folder)."""
    actions = ACTIONS.copy()
    if config is not None:
        email.with_templates(actions, email.templates_folder(config), required=config.email is not None)
    return actions


def builtin_handlers() -> JobHandlers:
    """A copy of the built-in job handlers (one per job kind of the built-in external actions)."""
    return HANDLERS.copy()


__all__ = ["builtin_actions", "builtin_handlers", "builtin_events", "email", "events", "folders", "order", "podos",
           "shipments", "split", "stores", "webhook"]
