"""Dry-run previews: what each recorded job would send, shown in its action's ``detail``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
import datetime as _dt
from typing import Any

from ruledesk.engine.model.context import utcnow
from ruledesk.engine.model.jobs import PREVIEWS, JobContext, Preview
from ruledesk.engine.run.decision import Decision
from ruledesk.engine.run.engine import Engine


def preview_jobs(engine: Engine, decisions: Iterable[Decision], *, previews: Mapping[str, Preview] | None = None,
                 clients: Mapping[str, Any] | None = None,
                 clock: Callable[[], _dt.datetime] = utcnow) -> None:
    """Add ``detail.preview`` to every dry-run job of ``decisions`` whose kind has a preview: the
    request it would send for the order as that decision left it.  Nothing is sent; a preview that
    cannot be made says why (``detail.preview.error``)."""
    previews = PREVIEWS if previews is None else previews
    for decision in decisions:
        for record in decision.actions:
            job = record.job
            fn = previews.get(job.kind) if job is not None and record.status == "dry-run" else None
            if fn is None:
                continue
            try:
                ctx = JobContext(copy.deepcopy(decision.order), engine.store(job.store), clients or {}, clock,
                                 config=engine.config)
                shown = fn(job, ctx)
            except Exception as exc:  # a preview never ends a dry run
                shown = {"error": f"{type(exc).__name__}: {exc}"}
            record.detail = {**(record.detail or {}), "preview": shown}
