"""`ruledesk press`: a button's rules (`when button "LABEL"`) on one order, in a dry run."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import closest
from ruledesk.engine.lang.compiler import button_key
from ruledesk.engine.lang.ruleset import Ruleset
from ruledesk.engine.run.engine import Decision, Engine, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING
from ruledesk.engine.cli.inputs import engine_errors_exit, input_name, load_or_exit, read_json_or_exit
from ruledesk.engine.cli.options import (EXIT_USAGE, DecisionFormatOption, ExplainOption, NowOption, RulesOption,
                                         fixed_clock, stderr)
from ruledesk.engine.cli.render import default_format, stdout_console, write_decisions


def press(
    label: Annotated[str, typer.Argument(metavar="LABEL", hidden=True)],
    order_file: Annotated[str, typer.Argument(metavar="ORDER.json|-", hidden=True)],
    rules: RulesOption = None,
    store: Annotated[str | None, typer.Option("--store", metavar="NAME", help="The store the order is from "
                                              "(store.name in the rules).", show_default=False)] = None,
    output_format: DecisionFormatOption = None,
    explain: ExplainOption = False,
    now: NowOption = None,
) -> None:
    """Press a button: run its rules on one order (dry run).

    LABEL is the button's label, as in `when button "LABEL"`; ORDER.json is an Order Desk order,
    or an event object as run reads (its order and store are used); "-" reads stdin. Prints the
    decisions like run: the button's, then those of every event its actions emit. This is a dry
    run: the order is changed in memory only, and external effects (emails, webhooks, podOS) are
    recorded, not performed.
    """
    err = stderr()
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
