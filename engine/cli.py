"""The ruledesk command line: thin commands (check, fmt, run, events, actions, version) over the library.

Exit codes are a contract (README, "Exit codes"): 0 success; 1 the rules have errors (or, with
``--strict``, warnings), ``fmt`` found files to reformat or could not parse one; 2 a usage error
(a bad option, an input file that cannot be read); 3 ``run`` processed the input but rejected
some lines.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from decimal import Decimal
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import ast
from .diagnostics import Diagnostics
from .engine import Decision, Engine, default_actions, default_events
from .models import dump_value, to_json
from .ruleset import RulesetError, build_ruleset, check_sources, find_rule_files, format_diagnostics, read_sources

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

DEFAULT_RULES = "rules.d"
STDIN = "-"
PROGRESS_MIN_LINES = 1000  # below this, a run is over before a progress bar would help

app = typer.Typer(
    name="ruledesk",
    help="Rules for Order Desk-style order automation: check, format and run rule files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


class RunFormat(str, Enum):
    json = "json"
    table = "table"


PathsArg = Annotated[list[str] | None, typer.Argument(help=f"Rule files or directories (default: {DEFAULT_RULES}).",
                                                      show_default=False)]


# ---- check -------------------------------------------------------------------------------------


@app.command()
def check(
    paths: PathsArg = None,
    output_format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = TextOrJson.text,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
) -> None:
    """Parse and check every *.rules file under PATHS; report every problem at once (on stdout)."""
    sources, diagnostics = _read_rule_files(paths)
    result, diagnostics = check_sources(sources, default_events(), default_actions(), diagnostics)
    rules = sum(isinstance(item, ast.Rule) for module in result.modules for item in module.items)
    errors, warnings = diagnostics.errors, diagnostics.warnings
    if output_format is TextOrJson.json:
        report = {"files": sorted(sources), "rules": rules, "errors": len(errors), "warnings": len(warnings),
                  "diagnostics": [d.to_json() for d in diagnostics.sorted()]}
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for diagnostic in diagnostics.sorted():
            typer.echo(diagnostic.format(sources.get(diagnostic.loc.file)))
        typer.echo(f"{_count(len(sources), 'file')}, {_count(rules, 'rule')}: "
                   f"{_count(len(errors), 'error')}, {_count(len(warnings), 'warning')}")
    if errors or (strict and warnings):
        raise typer.Exit(EXIT_ERRORS)


def _read_rule_files(paths: list[str] | None) -> tuple[dict[str, str], Diagnostics]:
    """The rule files under ``paths`` and their text; unreadable paths and empty directories are E110."""
    diagnostics = Diagnostics()
    paths = paths or [DEFAULT_RULES]
    for path in paths:
        if Path(path).is_dir() and not find_rule_files([path]):
            diagnostics.error(ast.Loc(path, 0, 0), "E110", f"no *.rules files under {path}")
    return read_sources(find_rule_files(paths), diagnostics), diagnostics


# ---- fmt ---------------------------------------------------------------------------------------


@app.command()
def fmt(
    paths: PathsArg = None,
    check_only: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff instead of writing files.")] = False,
) -> None:
    """Rewrite rule files in the canonical layout (comments kept); "-" formats stdin to stdout."""
    from .formatter import FormatError, format_source

    paths = paths or [DEFAULT_RULES]
    err = _stderr()
    if paths == [STDIN]:
        text = sys.stdin.read()
        try:
            formatted = format_source(text, "<stdin>")
        except FormatError as exc:
            err.print(format_diagnostics(exc.diagnostics, {"<stdin>": text}))
            raise typer.Exit(EXIT_ERRORS) from None
        if diff:
            sys.stdout.write(_unified_diff(text, formatted, "<stdin>"))
        elif not check_only:
            sys.stdout.write(formatted)
        raise typer.Exit(EXIT_ERRORS if check_only and formatted != text else EXIT_OK)

    sources, diagnostics = _read_rule_files(paths)
    failed = bool(diagnostics)
    if failed:
        err.print(format_diagnostics(diagnostics.sorted(), sources))
    changed: list[str] = []
    for path, text in sources.items():
        try:
            formatted = format_source(text, path)
        except FormatError as exc:
            err.print(format_diagnostics(exc.diagnostics, {path: text}))
            err.print(f"error: {path} left unchanged")
            failed = True
            continue
        if formatted == text:
            continue
        changed.append(path)
        if diff:
            sys.stdout.write(_unified_diff(text, formatted, path))
        elif check_only:
            err.print(f"would reformat {path}")
        else:
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.write(formatted)
            err.print(f"reformatted {path}")
    verb = "would be reformatted" if check_only or diff else "reformatted"
    err.print(f"{_count(len(changed), 'file')} {verb}, {len(sources) - len(changed)} unchanged")
    if failed or (check_only and changed):
        raise typer.Exit(EXIT_ERRORS)


def _unified_diff(before: str, after: str, path: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"{path} (original)", f"{path} (formatted)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# ---- run ---------------------------------------------------------------------------------------


@app.command()
def run(
    orders: Annotated[str, typer.Argument(metavar="ORDERS.jsonl|-",
                                          help='One event or bare order per line; "-" reads stdin.')],
    rules: Annotated[list[str] | None, typer.Option("--rules", help=f"Rule file or directory, repeatable "
                                                                  f"(default: {DEFAULT_RULES}).",
                                                    show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Change in-memory copies only; record "
                                                           "external effects instead of performing them.")] = False,
    output_format: Annotated[RunFormat | None, typer.Option(
        "--format", help="json: one decision per line; table: readable. Default: table on a terminal, "
                         "json otherwise.", show_default=False)] = None,
    max_depth: Annotated[int, typer.Option("--max-depth", min=0, help="Longest cascade of emitted events.")] = 10,
    max_firings: Annotated[int, typer.Option("--max-firings", min=1,
                                             help="Most rule firings for one incoming line.")] = 100,
) -> None:
    """Run the rules over ORDERS: one decision per processed event, emitted events included."""
    err = _stderr()
    sources, diagnostics = _read_rule_files(rules)
    events, catalogue = default_events(), default_actions()
    try:
        if diagnostics:
            raise RulesetError(diagnostics.sorted(), sources)
        ruleset = build_ruleset(sources, events, catalogue)
    except RulesetError as exc:
        err.print(format_diagnostics(exc.diagnostics, exc.sources))
        errors = sum(d.is_error for d in exc.diagnostics)
        err.print(f"the rules have {_count(errors, 'error')}; nothing was run")
        raise typer.Exit(EXIT_ERRORS) from None
    if ruleset.diagnostics:
        err.print(format_diagnostics(ruleset.diagnostics, sources))
    engine = Engine(ruleset, events=events, actions=catalogue, dry_run=dry_run, max_depth=max_depth,
                    max_firings=max_firings)

    if output_format is None:
        output_format = RunFormat.table if sys.stdout.isatty() else RunFormat.json
    out = Console(highlight=False, soft_wrap=False)
    name = "<stdin>" if orders == STDIN else orders
    try:
        stream, total = _open_input(orders)
    except OSError as exc:
        err.print(f"error: cannot read {name}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    processed = emitted = rejected = 0
    with stream as lines, _progress(err, total) as advance:
        for number, line in enumerate(lines, 1):
            advance()
            if not line.strip():
                continue
            try:
                decisions = _process_line(engine, line, dry_run)
            except _Rejected as exc:
                rejected += 1
                err.print(f"{name}:{number}: {exc}")
                continue
            processed += len(decisions)
            emitted += sum(1 for d in decisions if d.depth > 0)
            if output_format is RunFormat.json:
                sys.stdout.write("".join(to_json(d.to_json(), dumped=True) + "\n" for d in decisions))
            else:
                out.print(_decision_table(number, decisions))
    err.print(f"{_count(processed, 'event')} processed ({emitted} emitted), {_count(rejected, 'line')} rejected")
    if rejected:
        raise typer.Exit(EXIT_REJECTED)


class _Rejected(Exception):
    """An input line that cannot be processed; the message says why, in one line."""


def _process_line(engine: Engine, line: str, dry_run: bool) -> list[Decision]:
    try:
        data = json.loads(line, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise _Rejected(f"expected a JSON object (an event or an order), got {_json_kind(data)}")
    try:
        return engine.process(data, dry_run=dry_run)
    except ValueError as exc:  # EventError, and Event.from_dict's complaints about the shape
        raise _Rejected(str(exc)) from None
    except Exception as exc:  # an engine bug must not end a long run: report it with the line and go on
        raise _Rejected(f"internal error: {type(exc).__name__}: {exc}") from exc


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _open_input(orders: str) -> tuple[AbstractContextManager[IO[str]], int | None]:
    """The input stream (stdin is not closed after use) and, for a file, its number of lines."""
    if orders == STDIN:
        return nullcontext(sys.stdin), None
    with open(orders, "rb") as counting:
        total = sum(1 for _ in counting)
    return open(orders, encoding="utf-8", errors="replace"), total


@contextmanager
def _progress(err: Console, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr for long file inputs, when stderr is a terminal and stdout is not.

    When stdout is a terminal too, the decisions streaming past are the progress (and a live bar
    would tear them).
    """
    if total is None or total < PROGRESS_MIN_LINES or not err.is_terminal or sys.stdout.isatty():
        yield lambda: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True, redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task("lines", total=total)
        yield lambda: bar.advance(task)


def _decision_table(number: int, decisions: list[Decision]) -> Table:
    """One incoming line: each processed event as a heading row, then its rules' actions and outcomes."""
    first, order = decisions[0], decisions[-1].order
    summary = [f"folder {order.get('folder')}"]
    summary += [f"{label} {order[key]}" for key, label in (("tag_name", "tag"), ("shipping_method", "shipping"))
                if order.get(key)]
    table = Table(title=escape(f"line {number} · order {first.order_id or '?'} · {first.event}"),
                  caption=escape(" · ".join(summary)), title_justify="left", caption_justify="left")
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


# ---- catalogues --------------------------------------------------------------------------------


@app.command()
def events(
    output_format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = TextOrJson.text,
) -> None:
    """List the events rules can name in `when`, with their payload fields (event.NAME)."""
    entries = [{"name": spec.name, "source": spec.source, "description": spec.description,
                "payload": _fields(spec.payload)} for spec in default_events()]
    _print_catalogue(entries, "payload", "event", output_format)


@app.command()
def actions(
    output_format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = TextOrJson.text,
) -> None:
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


# ---- version -----------------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print ruledesk's version."""
    typer.echo(f"ruledesk {_version()}")


def _version() -> str:
    try:
        return metadata.version("ruledesk")
    except metadata.PackageNotFoundError:
        return "unknown"


def _stderr() -> Console:
    """Messages and diagnostics on stderr: plain text, never wrapped (one problem, one line)."""
    return Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def main() -> None:
    """Entry point of the ``ruledesk`` console script."""
    app(prog_name="ruledesk")


if __name__ == "__main__":
    main()
