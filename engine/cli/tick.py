"""`ruledesk tick`: run the scheduled rules (`when every D in folder "F"`) once, over an orders file or the daemon's store."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from ruledesk.actions import builtin_handlers
from ruledesk.engine.daemon.intake import schedule_periods, schedule_run
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.jobs.preview import preview_jobs
from ruledesk.engine.model.config import Limits
from ruledesk.engine.model.order import load_json
from ruledesk.engine.run.engine import Decision, Engine, EventError, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING
from ruledesk.engine.cli.inputs import input_name, load_or_exit
from ruledesk.engine.cli.options import (EXIT_INTERNAL, EXIT_REJECTED, EXIT_USAGE, STDIN, ConfigOption,
                                         DecisionFormatOption, DryRunOption, ExplainOption, NowOption, RulesOption, count,
                                         fixed_clock, load_config_or_exit, stderr)
from ruledesk.engine.cli.render import default_format, stdout_console, write_decisions


def tick(
    orders: Annotated[str | None, typer.Argument(metavar="ORDERS.jsonl|-", hidden=True)] = None,
    rules: RulesOption = None,
    dry_run: DryRunOption = False,
    output_format: DecisionFormatOption = None,
    explain: ExplainOption = False,
    now: NowOption = None,
    config_file: ConfigOption = None,
    db: Annotated[str | None, typer.Option(
        "--db", metavar="URL", show_default=False,
        help="Instead of an orders file: queue this period's scheduled runs for the orders the daemon's "
             "store keeps, for `ruledesk serve` to run (each period of each order once).")] = None,
) -> None:
    """Run the due scheduled rules once.

    A scheduled rule, `when every D in folder "F"`, runs once per period of D (periods start at
    multiples of D since 1970-01-01 UTC) for each order in folder F. With ORDERS.jsonl ("-" reads
    stdin; a line is an order, or an event whose order and store are used), every scheduled rule
    runs now on each order of the file that is in its folder, like `ruledesk run` (external effects
    performed in-process unless --dry-run), and the decisions are printed; its event id names the
    period, so a job keeps its key when the same period is ticked again. With --db, the runs of
    this period are queued in the daemon's inbox instead (a run already queued is not queued
    again) and `ruledesk serve` performs them; the number queued is printed. Use it from cron when
    the daemon's own scheduler is off, or to run schedules without a daemon.
    """
    err = stderr()
    config = load_config_or_exit(config_file, err)
    events, catalogue = default_events(), default_actions(config)
    ruleset = load_or_exit(rules, events, catalogue, err, trace=False)
    periods = schedule_periods(ruleset, now.timestamp() if now is not None else time.time())
    if db is not None:
        if orders is not None:
            err.print("error: give ORDERS.jsonl (run here) or --db URL (queued for the daemon), not both")
            raise typer.Exit(EXIT_USAGE)
        _queue(periods, db, config, err)
        return
    if orders is None:
        err.print("error: give ORDERS.jsonl (or - for stdin), or --db URL")
        raise typer.Exit(EXIT_USAGE)
    if not periods:
        err.print("no enabled scheduled rule (when every D in folder \"F\"): nothing to run")
        return
    limits = config.limits if config is not None else Limits()
    engine = Engine(ruleset, events=events, actions=catalogue, stores=config.stores if config else None,
                    config=config, dry_run=dry_run, max_depth=limits.max_depth, max_firings=limits.max_firings,
                    clock=fixed_clock(now), explain=DECIDING)
    runner = None if dry_run else MemoryRunner(engine, builtin_handlers())
    out, fmt = stdout_console(), default_format(output_format)
    name = input_name(orders)
    ran = rejected = failed = 0
    for number, line in enumerate(_lines(orders, err), 1):
        if not line.strip():
            continue
        try:
            order, store = _order_and_store(load_json(line))
            folder = engine.event({"event": "Order is Imported", "order": order, "store": store}).order["folder"]
        except (ValueError, EventError) as exc:
            rejected += 1
            err.print(f"{name}:{number}: {exc}")
            continue
        for _key, rule, trigger, period in periods:
            if folder != trigger.folder:
                continue
            try:
                decisions, failures = _run(engine, rule, order, store, period, runner)
            except EventError as exc:
                rejected += 1
                err.print(f"{name}:{number}: {exc}")
                continue
            except Exception as exc:  # a bug must not end the tick: report it and go on
                failed += 1
                err.print(f"{name}:{number}: internal error: {type(exc).__name__}: {exc}")
                continue
            for failure in failures:
                err.print(f"{name}:{number}: {failure}")
            ran += 1
            write_decisions(out, decisions, fmt, explain=explain, title=f"line {number}: {rule}")
    err.print(f"{count(ran, 'scheduled run')}, {count(rejected, 'line')} rejected")
    if failed:
        raise typer.Exit(EXIT_INTERNAL)
    if rejected:
        raise typer.Exit(EXIT_REJECTED)


def _lines(orders: str, err: Any) -> list[str]:
    try:
        if orders == STDIN:
            return sys.stdin.read().splitlines()
        with open(orders, encoding="utf-8", errors="replace") as stream:
            return stream.read().splitlines()
    except OSError as exc:
        err.print(f"error: cannot read {input_name(orders)}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None


def _order_and_store(data: Any) -> tuple[dict[str, Any], Any]:
    """The order of a line (a bare order, or an event's order) and the store it names."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object (an order or an event)")
    if "event" in data:
        order = data.get("order")
        if not isinstance(order, dict):
            raise ValueError('an event needs an "order" object')
        return order, data.get("store")
    return data, None


def _run(engine: Engine, rule: str, order: dict[str, Any], store: Any, period: str,
         runner: MemoryRunner | None) -> tuple[list[Decision], list[str]]:
    result = engine.run_schedule(rule, order, store=store, event_id=period)
    if runner is None:
        preview_jobs(engine, result.decisions)
        return result.decisions, []
    return runner.perform(result)


def _queue(periods: list[tuple[str, str, Any, str]], db: str, config: Any, err: Any) -> None:
    from ruledesk.engine.store import StoreError, open_store

    try:
        opened = open_store(db)
    except (StoreError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    with opened:
        stores = [s.name for s in config.stores] if config is not None and config.stores else opened.order_stores()
        items = [schedule_run(rule, trigger, period, store, order_id) for _key, rule, trigger, period in periods
                 for store in stores for order_id in opened.orders_in_folder(store, trigger.folder)]
        queued = sum(opened.enqueue(items, time.time())) if items else 0
    print(f"{count(queued, 'scheduled run')} queued ({len(items) - queued} queued before)")

