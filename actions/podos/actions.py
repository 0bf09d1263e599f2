"""The podOS action: "Submit Order to podOS" records a submission job and fires "Order Scheduled to podOS"."""

from __future__ import annotations

from typing import Any

from ruledesk.engine.model.catalogue import NoParams, action
from ruledesk.engine.model.context import ActionContext

from ruledesk.actions.podos.events import PODOS, SCHEDULED

SUBMIT = "podos.submit"  # the job kind (actions/podos/handlers.py)


@action("Submit Order to podOS", NoParams, job=SUBMIT, mutates_order=False, emits=(SCHEDULED,), source=PODOS,
        touches=())
def submit_order(ctx: ActionContext, params: NoParams) -> dict[str, Any] | None:
    """Send the order to podOS (a job: "Before Order Submitted to podOS" runs first, then the order as
    its rules leave it is sent); fires "Order Scheduled to podOS" now."""
    ctx.emit(SCHEDULED, {})
    return None
