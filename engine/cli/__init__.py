"""The ruledesk command line: thin commands (check, fmt, run, test, explain, events, actions, version) over the library.

Exit codes are a contract (README, "Exit codes"): 0 success; 1 the rules have errors (or, with
``--strict``, warnings), ``fmt`` found files to reformat or could not parse one, ``test`` had a
failing or erroneous case or missed ``--fail-under``; 2 a usage error (a bad option, an input
file that cannot be read); 3 ``run`` processed the input but rejected some lines.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import signal
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

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostics
from ruledesk.engine.run.engine import Decision, Engine, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING, FULL
from ruledesk.engine.model.order import dump_value, to_json
from ruledesk.engine.lang.ruleset import (RulesetError, check_sources, format_diagnostics, load_ruleset,
                                          read_rule_files)
from ruledesk.engine.testing.cases import parse_now

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

DEFAULT_RULES = "rules.d"
DEFAULT_EVENT = "Order is Imported"
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


class TestFormat(str, Enum):
    __test__ = False  # not a pytest class

    text = "text"
    json = "json"
    junit = "junit"


PathsArg = Annotated[list[str] | None, typer.Argument(help=f"Rule files or directories (default: {DEFAULT_RULES}).",
                                                      show_default=False)]
RulesOption = Annotated[list[str] | None, typer.Option("--rules", help=f"Rule file or directory, repeatable "
                                                                      f"(default: {DEFAULT_RULES}).",
                                                        show_default=False)]


def _parse_now_option(value: str | None) -> _dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_now(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


NowOption = Annotated[str | None, typer.Option(
    "--now", metavar='"YYYY-MM-DD HH:MM:SS"', callback=_parse_now_option,
    help="Fix the clock (UTC) that now() and timestamps read, for reproducible output.", show_default=False)]


# ---- check -------------------------------------------------------------------------------------


@app.command()
def check(
    paths: PathsArg = None,
    output_format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = TextOrJson.text,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
) -> None:
    """Parse and check every *.rules file under PATHS; report every problem at once (on stdout)."""
    sources, diagnostics = read_rule_files(paths or [DEFAULT_RULES])
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


# ---- fmt ---------------------------------------------------------------------------------------


@app.command()
def fmt(
    paths: PathsArg = None,
    check_only: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff instead of writing files.")] = False,
) -> None:
    """Rewrite rule files in the canonical layout (comments kept); "-" formats stdin to stdout."""
    from ruledesk.grammar.formatter import FormatError, format_source

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

    sources, diagnostics = read_rule_files(paths or [DEFAULT_RULES])
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
    explain: Annotated[bool, typer.Option("--explain", help="Say why each rule did or did not fire: json adds "
                                                           "an \"explain\" list, table prints the lines.")] = False,
    now: NowOption = None,
) -> None:
    """Run the rules over ORDERS: one decision per processed event, emitted events included."""
    err = _stderr()
    events, catalogue = default_events(), default_actions()
    ruleset = _build_or_exit(rules, events, catalogue, err, trace=False)
    engine = Engine(ruleset, events=events, actions=catalogue, dry_run=dry_run, max_depth=max_depth,
                    max_firings=max_firings, clock=_fixed_clock(now), explain=DECIDING)

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
                sys.stdout.write("".join(to_json(d.to_json(explain=explain), dumped=True) + "\n" for d in decisions))
            else:
                out.print(_decision_table(number, decisions))
                if explain:
                    out.print(escape("\n".join(_explanation(decisions, full=False))), soft_wrap=True)
    err.print(f"{_count(processed, 'event')} processed ({emitted} emitted), {_count(rejected, 'line')} rejected")
    if rejected:
        raise typer.Exit(EXIT_REJECTED)


def _build_or_exit(rules: list[str] | None, events, catalogue, err: Console, *, trace: bool):
    """The checked ruleset, or the diagnostics on stderr and exit 1 (nothing runs on rules with errors)."""
    try:
        ruleset = load_ruleset(rules or [DEFAULT_RULES], events, catalogue, trace=trace)
    except RulesetError as exc:
        err.print(format_diagnostics(exc.diagnostics, exc.sources))
        errors = sum(d.is_error for d in exc.diagnostics)
        err.print(f"the rules have {_count(errors, 'error')}; nothing was run")
        raise typer.Exit(EXIT_ERRORS) from None
    if ruleset.diagnostics:
        err.print(format_diagnostics(ruleset.diagnostics, ruleset.sources))
    return ruleset


def _fixed_clock(now: _dt.datetime | None):
    return (lambda: now) if now is not None else None


def _explanation(decisions: list[Decision], full: bool) -> list[str]:
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
        return engine.process(data, dry_run=dry_run).decisions
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


# ---- test --------------------------------------------------------------------------------------


@app.command("test")
def test_command(
    tests: Annotated[list[str] | None, typer.Argument(
        metavar="TESTS", help="Test files, or directories searched for *_test.yaml (default: the "
                                   "*_test.yaml files next to the rules).", show_default=False)] = None,
    rules: RulesOption = None,
    pattern: Annotated[str | None, typer.Option("-k", metavar="PATTERN", help="Run only the cases whose "
                                                "FILE::NAME contains PATTERN (any case).")] = None,
    output_format: Annotated[TestFormat, typer.Option("--format", help="text, json, or junit (XML for CI).")]
    = TestFormat.text,
    coverage: Annotated[bool, typer.Option("--coverage", help="Report the rules no case fired and the clauses "
                                                              "never seen true or false.")] = False,
    coverage_format: Annotated[TextOrJson, typer.Option("--coverage-format", help="Coverage as a table or JSON.")]
    = TextOrJson.text,
    fail_under: Annotated[float | None, typer.Option("--fail-under", metavar="PCT", min=0, max=100,
                                                     help="Exit 1 when the total coverage is under PCT "
                                                          "(implies --coverage).", show_default=False)] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Run again on every change of the rules, tests or "
                                                        "fixtures (Ctrl-C stops).")] = False,
    now: NowOption = None,
) -> None:
    """Run rule test cases (*_test.yaml) through the engine in dry-run; exit 1 on any failure or error."""
    from ruledesk.engine.testing.runner import watch as watch_paths

    rule_paths = rules or [DEFAULT_RULES]
    options = _TestOptions(rule_paths, tests or [], pattern, output_format, coverage or fail_under is not None,
                           coverage_format, fail_under, now)
    if not watch:
        raise typer.Exit(_run_test_suite(options))
    console = Console(highlight=False)
    outcome = [EXIT_OK]

    def rerun() -> None:
        console.clear()
        outcome[0] = _run_test_suite(options)
        watched = list(dict.fromkeys(rule_paths + (tests or [])))
        typer.echo(f"watching {', '.join(watched)} for changes (Ctrl-C stops)", err=True)

    try:
        watch_paths(rule_paths + (tests or []), rerun)
    except KeyboardInterrupt:
        pass
    raise typer.Exit(outcome[0])


class _TestOptions:
    def __init__(self, rule_paths: list[str], tests: list[str], pattern: str | None, output_format: TestFormat,
                 coverage: bool, coverage_format: TextOrJson, fail_under: float | None,
                 now: _dt.datetime | None) -> None:
        self.rule_paths, self.tests, self.pattern = rule_paths, tests, pattern
        self.output_format, self.coverage, self.coverage_format = output_format, coverage, coverage_format
        self.fail_under, self.now = fail_under, now


def _run_test_suite(options: _TestOptions) -> int:
    """One run of ``ruledesk test``: print the results in the chosen format; the exit code."""
    from ruledesk.engine.testing.coverage import measure
    from ruledesk.engine.testing.runner import RULES_CASE, run_tests
    from ruledesk.engine.testing.results import ERROR, FAILED, PASSED

    events, catalogue = default_events(), default_actions()
    run = run_tests(options.rule_paths, options.tests, pattern=options.pattern, now=options.now, events=events,
                    actions=catalogue)
    report = None
    if options.coverage and run.ruleset is not None:
        report = measure(run.ruleset, run.decisions(), events=events, actions=catalogue)
    under = options.fail_under is not None and (report is None or not report.meets(options.fail_under))
    under_text = ""
    if under:
        shown = f"{report.total_percent:.1f}%" if report is not None else "not measured"
        under_text = f"coverage {shown} is under --fail-under {options.fail_under:g}%"
    nothing = "" if run.results else (
        f"no test case matches -k {options.pattern!r}" if options.pattern and run.test_files
        else "no test cases found in " + ", ".join(options.tests or options.rule_paths)
        + " (test files are named *_test.yaml)")

    if options.output_format is TestFormat.json:
        data = run.to_json()
        if report is not None:
            data["coverage"] = report.to_json()
        if options.fail_under is not None:
            data["fail_under"] = {"percent": options.fail_under, "met": not under}
        if nothing:
            data["error"] = nothing
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif options.output_format is TestFormat.junit:
        sys.stdout.write(run.to_junit())
        for line in filter(None, [_coverage_text(report, options), under_text, nothing, run.summary()]):
            typer.echo(line, err=True)
    else:
        labels = {PASSED: "PASS", FAILED: "FAIL", ERROR: "ERROR"}
        for result in run.results:
            label = labels[result.status]
            shown = result.id if result.status == PASSED or result.name == RULES_CASE else result.located_id
            typer.echo(f"{label} {shown}")
            for message in result.messages:
                typer.echo("\n".join("    " + line for line in message.split("\n")))
        for line in filter(None, [_coverage_text(report, options), under_text, nothing, run.summary()]):
            typer.echo(line)
    return EXIT_OK if run.ok and not under else EXIT_ERRORS


def _coverage_text(report, options: _TestOptions) -> str:
    if report is None:
        return ""
    if options.coverage_format is TextOrJson.json:
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False)
    return report.format()


# ---- explain -----------------------------------------------------------------------------------


@app.command()
def explain(
    order_file: Annotated[str, typer.Argument(metavar="ORDER.json|-", help='An Order Desk order (or an event '
                                              'object, as run reads); "-" reads stdin.')],
    rules: RulesOption = None,
    event: Annotated[str | None, typer.Option("--event", metavar="NAME", help='The event to process (default: '
                                              'the file\'s "event", else "Order is Imported").',
                                              show_default=False)] = None,
    payload: Annotated[str | None, typer.Option("--payload", metavar="JSON", help="The event's payload, a JSON "
                                                "object.", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Every value every condition computed, not only the "
                                                      "deciding clause.")] = False,
    now: NowOption = None,
) -> None:
    """Why each rule did or did not fire for one order, on the event and every event it emits (dry-run)."""
    err = _stderr()
    events, catalogue = default_events(), default_actions()
    ruleset = _build_or_exit(rules, events, catalogue, err, trace=full)
    name = "<stdin>" if order_file == STDIN else order_file
    try:
        text = sys.stdin.read() if order_file == STDIN else Path(order_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: cannot read {name}: {getattr(exc, 'strerror', None) or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        data = json.loads(text, parse_float=Decimal)
        extra = json.loads(payload, parse_float=Decimal) if payload is not None else None
    except json.JSONDecodeError as exc:
        err.print(f"error: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        raise typer.Exit(EXIT_USAGE) from None
    if not isinstance(data, dict) or (extra is not None and not isinstance(extra, dict)):
        err.print("error: the order and --payload must be JSON objects")
        raise typer.Exit(EXIT_USAGE)
    if "event" not in data:
        data = {"event": DEFAULT_EVENT, "order": data}
    if event is not None:
        data["event"] = event
    if extra is not None:
        data["payload"] = extra
    engine = Engine(ruleset, events=events, actions=catalogue, clock=_fixed_clock(now),
                    explain=FULL if full else DECIDING)
    try:
        decisions = engine.process(data, dry_run=True).decisions
    except ValueError as exc:
        err.print(f"error: {name}: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo("\n".join(_explanation(decisions, full=full)))


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
    if hasattr(signal, "SIGPIPE"):
        # `ruledesk run ... | head`: end quietly when the reader goes away, like any Unix filter,
        # instead of exiting 1 (which means "the rules have errors").
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    app(prog_name="ruledesk")


