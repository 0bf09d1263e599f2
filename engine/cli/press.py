"""`ruledesk press`: a button's rules (`when button "LABEL"`) on one order, in a dry run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ruledesk.actions import builtin_handlers
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.jobs.preview import preview_jobs
from ruledesk.engine.model.config import Limits
from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import closest
from ruledesk.engine.lang.compiler import button_key
from ruledesk.engine.lang.ruleset import Ruleset
from ruledesk.engine.run.engine import Decision, Engine, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING
from ruledesk.engine.cli.inputs import engine_errors_exit, input_name, load_or_exit, read_json_or_exit
from ruledesk.engine.cli.options import (EXIT_INTERNAL, EXIT_USAGE, STDIN, ConfigOption, DecisionFormatOption,
                                         ExplainOption, NowOption, RulesOption, fixed_clock, load_config_or_exit, stderr)
from ruledesk.engine.cli.render import default_format, stdout_console, write_decisions


def press(
    label: Annotated[str, typer.Argument(metavar="LABEL", hidden=True)],
    order_file: Annotated[str | None, typer.Argument(metavar="ORDER.json|-", hidden=True)] = None,
    rules: RulesOption = None,
    store: Annotated[str | None, typer.Option("--store", metavar="NAME", help="The store the order is from "
                                              "(store.name in the rules).", show_default=False)] = None,
    output_format: DecisionFormatOption = None,
    explain: ExplainOption = False,
    now: NowOption = None,
    order_id: Annotated[str | None, typer.Option(
        "--order", metavar="ORDER.json|ID", show_default=False,
        help="The order: a file (ORDER.json, a path that exists or ends in .json, or - for stdin), as "
             "ORDER.json above; or the id of an order the daemon keeps (with --db): the press is queued "
             "in the store's inbox, run by `ruledesk serve` in order with the order's other events, and "
             "its decisions are printed once committed.")] = None,
    perform: Annotated[bool, typer.Option(
        "--perform", help="With ORDER.json: perform the external effects (email, webhooks, podOS) "
                          "in-process, as `ruledesk run` does, instead of a dry run.")] = False,
    config_file: ConfigOption = None,
    db: Annotated[str, typer.Option("--db", metavar="URL", help="The daemon's store (with --order).")]
    = "sqlite:///ruledesk.db",
    wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", help="How long to wait for the daemon "
                                        "(with --order).")] = 30.0,
) -> None:
    """Press a button: run its rules on one order (a dry run unless --perform).

    LABEL is the button's label, as in `when button "LABEL"`; ORDER.json (or --order ORDER.json) is
    an Order Desk order, or an event object as run reads (its order and store are used); "-" reads
    stdin. Prints the decisions like run: the button's, then those of every event its actions
    emit. By default a dry run: the order is changed in memory only, and external effects (emails,
    webhooks, podOS) are recorded with what they would send, not performed; --perform performs
    them in-process. --config gives the stores and their settings.
    """
    err = stderr()
    if order_id is not None and _is_order_file(order_id):
        if order_file is not None:
            err.print("error: give the order once: ORDER.json or --order ORDER.json")
            raise typer.Exit(EXIT_USAGE)
        order_file, order_id = order_id, None
    if order_id is not None:
        if order_file is not None:
            err.print("error: give ORDER.json (a dry run here) or --order ID (the daemon's order), not both")
            raise typer.Exit(EXIT_USAGE)
        _press_stored(label, order_id, db, store or "default", wait, output_format, err)
        return
    if order_file is None:
        err.print("error: give ORDER.json (or - for stdin), or --order ID with --db")
        raise typer.Exit(EXIT_USAGE)
    config = load_config_or_exit(config_file, err)
    events, catalogue = default_events(), default_actions(config)
    ruleset = load_or_exit(rules, events, catalogue, err, trace=False)
    if ruleset.plan(button_key(label)) is None:
        err.print(f"error: {_unknown_button(label, ruleset)}")
        raise typer.Exit(EXIT_USAGE)
    data = read_json_or_exit(order_file, err)
    if isinstance(data, dict) and "event" in data:  # an event object, as run reads: its order and store
        data, store = data.get("order"), store or data.get("store")
    if not isinstance(data, dict):
        err.print(f"error: {input_name(order_file)}: the order must be a JSON object")
        raise typer.Exit(EXIT_USAGE)
    limits = config.limits if config is not None else Limits()
    engine = Engine(ruleset, events=events, actions=catalogue, stores=config.stores if config else None,
                    config=config, dry_run=not perform, clock=fixed_clock(now), explain=DECIDING,
                    max_depth=limits.max_depth, max_firings=limits.max_firings)
    with engine_errors_exit(err):
        decisions, failures = _press(engine, label, data, store, perform)
    write_decisions(stdout_console(), decisions, default_format(output_format), explain=explain, title="")
    for failure in failures:
        err.print(failure)
    if failures:
        raise typer.Exit(EXIT_INTERNAL)


def _unknown_button(label: str, ruleset: Ruleset) -> str:
    """Why ``label`` presses nothing, and the label meant (or the labels there are)."""
    labels = sorted({rule.trigger.label for rule in ruleset.rules
                     if isinstance(rule.trigger, ast.ButtonTrigger) and not rule.disabled})
    near = closest(label, labels)
    if near:
        hint = f"did you mean {json.dumps(near[0], ensure_ascii=False)}?"
    elif labels:
        hint = "the buttons are " + ", ".join(json.dumps(name, ensure_ascii=False) for name in labels)
    else:
        hint = "no enabled rule is triggered by a button"
    return f"no enabled rule has button {json.dumps(label, ensure_ascii=False)}; {hint}"


def _is_order_file(value: str) -> bool:
    """Whether ``--order VALUE`` names an order file rather than a stored order's id."""
    return value == STDIN or value.lower().endswith(".json") or Path(value).is_file()


def _press(engine: Engine, label: str, order: dict[str, Any], store: dict[str, Any] | str | None,
           perform: bool) -> tuple[list[Decision], list[str]]:
    """The decisions of the button's rules on the order and of every event they emit: in a dry run
    (each job shows what it would send), or with the jobs performed in-process (and the decisions
    of the events they emit); with the jobs that failed."""
    result = engine.press(label, order, store=store, dry_run=not perform)
    if not perform:
        preview_jobs(engine, result.decisions)
        return result.decisions, []
    return MemoryRunner(engine, builtin_handlers()).perform(result)


def _press_stored(label: str, order_id: str, db: str, store: str, wait: float, output_format: Any, err: Any) -> None:
    """Queue a press of ``label`` for a stored order and print its decisions once the daemon ran it."""
    from ruledesk.engine.daemon.intake import button_press
    from ruledesk.engine.store import StoreError, open_store

    try:
        opened = open_store(db)
    except (StoreError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    with opened:
        if opened.order(store, order_id) is None:
            err.print(f"error: store {store!r} has no order {order_id!r} in {opened.url_for_display}")
            raise typer.Exit(EXIT_USAGE)
        last = opened.last_ruleset()
        if last is not None:  # the buttons of the ruleset the daemon activated last (as the API checks them)
            from ruledesk.engine.lang.ruleset import build_ruleset
            ruleset = build_ruleset(json.loads(last[1]), default_events(), default_actions())
            plan = ruleset.plan(button_key(label))
            if plan is None:
                err.print(f"error: {_unknown_button(label, ruleset)}")
                raise typer.Exit(EXIT_USAGE)
            label = plan.rules[0].trigger.label
        press = button_press(store, order_id, label, time.time(), source="cli")
        event_id = press.id
        opened.enqueue([press], time.time())
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            stored = opened.event(event_id)
            if stored is not None and stored.status != "pending":
                break
            time.sleep(0.1)
        else:
            err.print(f"queued {event_id}; no daemon ran it within {wait:g} s (is `ruledesk serve --db {db}` running?)")
            raise typer.Exit(EXIT_INTERNAL)
        if stored.status == "poison":
            err.print(f"error: the daemon could not run the press: {stored.error}")
            raise typer.Exit(EXIT_INTERNAL)
        decisions = [json.loads(text) for text in opened.decisions_of(event_id)]
    for decision in decisions:
        decision.pop("why", None)
    if default_format(output_format) == "json":
        for decision in decisions:
            print(json.dumps(decision, ensure_ascii=False))
    else:
        for decision in decisions:
            fired = ", ".join(decision["fired"]) or "no rule fired"
            print(f"{decision['event']} (order {decision['order_id']}): {fired}")
