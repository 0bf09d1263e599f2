"""`ruledesk run`: the rules over a file of orders or events, one per line; a decision per processed event."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ruledesk.actions import builtin_handlers
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.jobs.preview import preview_jobs
from ruledesk.engine.model.config import Limits
from ruledesk.engine.model.order import load_json
from ruledesk.engine.model.context import Event
from ruledesk.engine.run.engine import Decision, Engine, EventError, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING
from ruledesk.engine.cli.inputs import input_name, load_or_exit
from ruledesk.engine.cli.options import (EXIT_INTERNAL, EXIT_REJECTED, EXIT_USAGE, STDIN, ConfigOption,
                                         DecisionFormatOption, DryRunOption, ExplainOption, NowOption, RulesOption, count,
                                         fixed_clock, load_config_or_exit, stderr)
from ruledesk.engine.cli.render import default_format, stdout_console, write_decisions

PROGRESS_MIN_LINES = 1000  # below this, a run is over before a progress bar would help


def run(
    orders: Annotated[str, typer.Argument(metavar="ORDERS.jsonl|-", hidden=True)],
    rules: RulesOption = None,
    dry_run: DryRunOption = False,
    output_format: DecisionFormatOption = None,
    max_depth: Annotated[int | None, typer.Option("--max-depth", metavar="N", min=0, show_default=False,
                                                  help="Longest cascade of emitted events (default: the "
                                                       "config's limits, else 10).")] = None,
    max_firings: Annotated[int | None, typer.Option("--max-firings", metavar="N", min=1, show_default=False,
                                                    help="Most rule firings for one incoming line (default: "
                                                         "the config's limits, else 100).")] = None,
    explain: ExplainOption = False,
    now: NowOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Run the rules over orders or events, one JSON object per line.

    Each line of ORDERS.jsonl ("-" reads stdin) is an event, {"event": NAME, "order": {...},
    "payload": {...}, "store": ...}, or a bare Order Desk order (taken as "Order is Imported").
    Prints one decision per processed event, emitted events included. A line that cannot be
    processed is reported on stderr as FILE:LINE: reason and skipped (exit 3); an engine failure
    on a line is reported as an internal error (exit 4). Without --dry-run, the jobs of external
    actions are performed in-process after each line, and the decisions of the events they emit
    follow the line's; a job that fails is reported on stderr.
    """
    err = stderr()
    config = load_config_or_exit(config_file, err)
    events, catalogue = default_events(), default_actions(config)
    ruleset = load_or_exit(rules, events, catalogue, err, trace=False)
    limits = config.limits if config is not None else Limits()
    max_depth = limits.max_depth if max_depth is None else max_depth
    max_firings = limits.max_firings if max_firings is None else max_firings
    engine = Engine(ruleset, events=events, actions=catalogue, stores=config.stores if config else None, config=config,
                    dry_run=dry_run, max_depth=max_depth, max_firings=max_firings, clock=fixed_clock(now),
                    explain=DECIDING)
    runner = None if dry_run else MemoryRunner(engine, builtin_handlers())  # real time, even with --now
    output_format = default_format(output_format)
    out = stdout_console()
    name = input_name(orders)
    try:
        stream, total = _open_input(orders)
    except OSError as exc:
        err.print(f"error: cannot read {name}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    processed = emitted = rejected = failed = 0
    with stream as lines, _progress(err, total) as advance:
        for number, line in enumerate(lines, 1):
            advance()
            if not line.strip():
                continue
            try:
                decisions, failures = _process(engine, engine.event_json(line, load=_parse_line), runner)
            except (_Rejected, EventError) as exc:
                rejected += 1
                err.print(f"{name}:{number}: {exc}")
                continue
            except Exception as exc:  # a bug in the engine must not end a long run: report it and go on
                failed += 1
                err.print(f"{name}:{number}: internal error: {type(exc).__name__}: {exc}")
                continue
            for failure in failures:
                err.print(f"{name}:{number}: {failure}")
            processed += len(decisions)
            emitted += sum(1 for d in decisions if d.depth > 0 or d.event_id != decisions[0].event_id)
            write_decisions(out, decisions, output_format, explain=explain, title=f"line {number}")
    if runner is not None and runner.pending:
        err.print(f"{count(runner.pending, 'job')} still waiting for a retry when the input ended: not performed")
    summary = f"{count(processed, 'event')} processed ({emitted} emitted), {count(rejected, 'line')} rejected"
    err.print(summary + (f", {count(failed, 'internal error')}" if failed else ""))
    if failed:
        raise typer.Exit(EXIT_INTERNAL)
    if rejected:
        raise typer.Exit(EXIT_REJECTED)


class _Rejected(Exception):
    """An input line that cannot be processed; the message says why, in one line."""


def _parse_line(line: str) -> dict[str, Any]:
    """One input line as a JSON object (numbers kept exact), or _Rejected saying why not.
    ``Engine.event_json`` reads a line with it whenever its typed path does not take the line."""
    try:
        data = load_json(line)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise _Rejected("invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise _Rejected(f"expected a JSON object (an event or an order), got {_json_kind(data)}")
    return data


def _process(engine: Engine, event: Event, runner: MemoryRunner | None) -> tuple[list[Decision], list[str]]:
    """The decisions of one incoming event (validated by ``Engine.event_json``) and, without
    --dry-run, of the events its jobs emitted when the in-memory runner performed them; with the jobs
    that failed."""
    result = engine.process(event, validated=True)
    if runner is None:  # a dry run: each job shows the request it would send
        preview_jobs(engine, result.decisions)
        return result.decisions, []
    return runner.perform(result)


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
