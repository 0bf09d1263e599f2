"""The built-in action catalogue: importing this package registers every core and integration action and event."""

from ruledesk.engine.model import events

from ruledesk.actions import folders, order, podos, shipments

__all__ = ["events", "folders", "order", "podos", "shipments"]
