"""Folder actions: Move to Folder."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ruledesk.engine.model.catalogue import action
from ruledesk.engine.model.context import ActionContext

from ruledesk.actions.order import ActionParams


class MoveToFolderParams(ActionParams):
    folder: str = Field(min_length=1, description="name of the folder to move the order to")


@action("Move to Folder", MoveToFolderParams, emits=("Folder is Changed",), touches=("folder",))
def move_to_folder(ctx: ActionContext, params: MoveToFolderParams) -> dict[str, Any]:
    """Move the order to a folder; fires "Folder is Changed" when the folder really changes."""
    previous = ctx.order.get("folder") or "New"
    if previous != params.folder:
        ctx.order["folder"] = params.folder
        ctx.changed = True
        ctx.emit("Folder is Changed", {"from_folder": previous, "to_folder": params.folder})
    return {"from": previous, "to": params.folder}
