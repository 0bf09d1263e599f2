"""The podOS print-on-demand integration: its events (and, registered beside them, its actions)."""

from ruledesk.actions.podos import events

__all__ = ["events"]
