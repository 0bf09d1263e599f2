"""The podOS print-on-demand integration (DESIGN.md, podOS; the wire contract is docs/podos-api.md):
its events, the "Submit Order to podOS" action, item resolution, the HTTP client, the job handlers
(submission, status polls, shipment callbacks) and a simulator for tests and demos."""

from ruledesk.engine.model.settings import PODOS_MAIL_CLASSES as MAIL_CLASSES
from ruledesk.actions.podos import actions, events, handlers, resolve

__all__ = ["MAIL_CLASSES", "actions", "events", "handlers", "resolve"]
