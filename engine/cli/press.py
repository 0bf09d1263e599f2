"""`ruledesk press`: a button's rules (`when button "LABEL"`) on one order, in a dry run."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import closest
from ruledesk.engine.lang.compiler import button_key
from ruledesk.engine.lang.ruleset import Ruleset
from ruledesk.engine.run.engine import Decision, Engine, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING
from ruledesk.engine.cli.inputs import engine_errors_exit, input_name, load_or_exit, read_json_or_exit
from ruledesk.engine.cli.options import (EXIT_INTERNAL, EXIT_USAGE, DecisionFormatOption, ExplainOption, NowOption, RulesOption,
                                         fixed_clock, stderr)
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
        "--order", metavar="ID", show_default=False,
        help="Press the button for an order the daemon keeps (with --db): the press is queued in the "
             "store's inbox, run by `ruledesk serve` in order with the order's other events, and its "
             "decisions are printed once committed.")] = None,
    db: Annotated[str, typer.Option("--db", metavar="URL", help="The daemon's store (with --order).")]
    = "sqlite:///ruledesk.db",
    wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", help="How long to wait for the daemon "
                                        "(with --order).")] = 30.0,
) -> None:
    """Press a button: run its rules on one order (dry run).

    LABEL is the button's label, as in `when button "LABEL"`; ORDER.json is an Order Desk order,
    or an event object as run reads (its order and store are used); "-" reads stdin. Prints the
    decisions like run: the button's, then those of every event its actions emit. This is a dry
    run: the order is changed in memory only, and external effects (emails, webhooks, podOS) are
    recorded, not performed.
    """
    err = stderr()
    if order_id is not None:
        if order_file is not None:
            err.print("error: give ORDER.json (a dry run here) or --order ID (the daemon's order), not both")
            raise typer.Exit(EXIT_USAGE)
        _press_stored(label, order_id, db, store or "default", wait, output_format, err)
        return
    if order_file is None:
        err.print("error: give ORDER.json (or - for stdin), or --order ID with --db")
        raise typer.Exit(EXIT_USAGE)
    events, catalogue = default_events(), default_actions()
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
    engine = Engine(ruleset, events=events, actions=catalogue, dry_run=True, clock=fixed_clock(now),
                    explain=DECIDING)
    with engine_errors_exit(err):
        decisions = _press(engine, label, data, store)
    write_decisions(stdout_console(), decisions, default_format(output_format), explain=explain, title="")


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


def _press(engine: Engine, label: str, order: dict[str, Any],
           store: dict[str, Any] | str | None) -> list[Decision]:
    """The decisions of the button's rules on the order and of every event they emit, in a dry run."""
    return engine.press(label, order, store=store, dry_run=True).decisions


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
