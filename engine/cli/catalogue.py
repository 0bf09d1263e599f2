"""`ruledesk events` and `ruledesk actions`: the catalogues rules can name, as a table or JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ruledesk.engine.run.engine import default_actions, default_events
from ruledesk.engine.cli.options import TextOrJson, TextOrJsonOption


def events(output_format: TextOrJsonOption = TextOrJson.text) -> None:
    """List the events rules can name in `when`.

    With their payload fields, which rules read as event.NAME.
    """
    entries = [{"name": spec.name, "source": spec.source, "description": spec.description,
                "payload": _fields(spec.payload)} for spec in default_events()]
    _print_catalogue(entries, "payload", "event", output_format)


def actions(output_format: TextOrJsonOption = TextOrJson.text) -> None:
    """List the actions rules can call in `then`, with their parameters."""
    entries = [{"name": spec.name, "source": spec.source, "description": spec.description,
                "params": _fields(spec.params), "external": spec.external, "emits": list(spec.emits)}
               for spec in default_actions()]
    _print_catalogue(entries, "params", "action", output_format)


def _fields(model: type[BaseModel]) -> list[dict[str, Any]]:
    return [{"name": name, "type": _type_name(info.annotation), "required": info.is_required(),
             "description": info.description or ""} for name, info in model.model_fields.items()]


def _type_name(annotation: Any) -> str:
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _print_catalogue(entries: list[dict[str, Any]], fields_key: str, kind: str, output_format: TextOrJson) -> None:
    if output_format is TextOrJson.json:
        typer.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{len(entries)} {kind}s", title_justify="left", show_lines=False)
    table.add_column(kind, no_wrap=True, style="bold")
    table.add_column("source", no_wrap=True)
    table.add_column("field" if kind == "event" else "parameter", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("required", no_wrap=True)
    table.add_column("description")
    for entry in entries:
        description = entry["description"]
        missing = [name for name in entry.get("emits", ()) if name not in description]
        if missing:
            description += f" Emits {', '.join(missing)}."
        if entry.get("external"):
            description += " External: recorded, not performed, under --dry-run."
        fields = entry[fields_key]
        table.add_row(escape(entry["name"]), entry["source"], "", "", "", escape(description), end_section=not fields)
        for index, field in enumerate(fields):
            name = f"event.{field['name']}" if kind == "event" else field["name"]
            table.add_row("", "", escape(name), escape(field["type"]), "yes" if field["required"] else "no",
                          escape(field["description"]), end_section=index == len(fields) - 1)
    out.print(table)
