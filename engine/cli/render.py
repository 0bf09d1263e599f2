"""How decisions are shown: JSON lines, one table per incoming line or order, and explanations."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ruledesk.engine.model.order import dump_value
from ruledesk.engine.run.decision import decision_line
from ruledesk.engine.run.engine import Decision
from ruledesk.engine.cli.options import DecisionFormat


def default_format(output_format: DecisionFormat | None) -> DecisionFormat:
    """The --format given, else a table on a terminal and JSON lines otherwise."""
    if output_format is not None:
        return output_format
    return DecisionFormat.table if sys.stdout.isatty() else DecisionFormat.json


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def write_decisions(out: Console, decisions: list[Decision], output_format: DecisionFormat, *, explain: bool,
                    title: str) -> None:
    """The decisions of one incoming event: JSON lines, or a table headed by ``title`` (then the why)."""
    if output_format is DecisionFormat.json:
        sys.stdout.write(json_lines(decisions, explain=explain))
        return
    out.print(decision_table(title, decisions))
    if explain:
        out.print(escape("\n".join(explanation(decisions, full=False))), soft_wrap=True)


def json_lines(decisions: list[Decision], *, explain: bool) -> str:
    """One JSON object per decision (LANGUAGE.md section 8), each on its own line (``decision_line``)."""
    return "".join(decision_line(d, explain) + "\n" for d in decisions)


def explanation(decisions: list[Decision], full: bool) -> list[str]:
    """Each decision headed by its event, then why every rule of the event did or did not fire."""
    lines: list[str] = []
    for decision in decisions:
        about = [f"order {decision.order_id}"] if decision.order_id is not None else []
        if decision.cause is not None:
            about.append(f"emitted by {json.dumps(decision.cause, ensure_ascii=False)}")
        lines.append(f"{decision.event} ({', '.join(about)})" if about else decision.event)
        lines.extend(decision.explain(full=full) or ["  (no rule is triggered by this event)"])
        if decision.stopped:
            lines.append(f"  stopped: {decision.stopped.get('reason')}")
    return lines


def decision_table(title: str, decisions: list[Decision]) -> Table:
    """One incoming event: each processed event as a heading row, then its rules' actions and outcomes.

    The title is followed by the order's id and the first event; the caption sums up the order after.
    """
    first, order = decisions[0], decisions[-1].order
    summary = [f"folder {order.get('folder')}"]
    summary += [f"{label} {order[key]}" for key, label in (("tag_name", "tag"), ("shipping_method", "shipping"))
                if order.get(key)]
    heading = [title] if title else []
    heading += [f"order {first.order_id or '?'}", first.event]
    table = Table(title=escape(" · ".join(heading)), caption=escape(" · ".join(summary)), title_justify="left",
                  caption_justify="left")
    table.add_column("rule")
    table.add_column("action")
    table.add_column("status", no_wrap=True)
    for decision in decisions:
        arrow = "  " * (decision.depth - 1) + "↳ " if decision.depth else ""
        table.add_row(f"[bold]{escape(arrow + decision.event)}[/bold]", "", "")
        if not decision.fired:
            table.add_row("  [dim](no rule fired)[/dim]", "", "")
        shown = None
        for record in decision.actions:
            params = ", ".join(f"{key}: {json.dumps(dump_value(value), ensure_ascii=False)}"
                               for key, value in record.params.items())
            action = f"{record.action}({params})" if params else record.action
            status = record.status + (f": {record.error}" if record.error else "")
            table.add_row(escape("  " + record.rule) if record.rule != shown else "", escape(action), escape(status))
            shown = record.rule
        for rule in decision.fired:
            if not any(record.rule == rule for record in decision.actions):
                table.add_row(escape("  " + rule), "[dim](no actions)[/dim]", "")
        if decision.stopped:
            table.add_row("", escape(f"stopped: {decision.stopped.get('reason')}"), "")
    return table
