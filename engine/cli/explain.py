"""`ruledesk explain`: why each rule did or did not fire for one order, on its event and the events emitted."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ruledesk.engine.run.engine import Decision, Engine, default_actions, default_events
from ruledesk.engine.run.explain import DECIDING, FULL
from ruledesk.engine.cli.inputs import (engine_errors_exit, input_name, load_or_exit, parse_json_or_exit,
                                        read_json_or_exit)
from ruledesk.engine.cli.options import (EXIT_USAGE, ConfigOption, NowOption, RulesOption, fixed_clock,
                                         load_config_or_exit, stderr)
from ruledesk.engine.cli.render import explanation

DEFAULT_EVENT = "Order is Imported"


def explain(
    order_file: Annotated[str, typer.Argument(metavar="ORDER.json|-", hidden=True)],
    rules: RulesOption = None,
    event: Annotated[str | None, typer.Option("--event", metavar="NAME", help='The event to process (default: '
                                              'the file\'s "event", else "Order is Imported").',
                                              show_default=False)] = None,
    payload: Annotated[str | None, typer.Option("--payload", metavar="JSON", help="The event's payload, a JSON "
                                                "object.", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Every value every condition computed, not only the "
                                                      "deciding clause.")] = False,
    now: NowOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Say why each rule did or did not fire for one order (dry run).

    ORDER.json is an Order Desk order, or an event object as run reads; "-" reads stdin. For the
    event and every event it emits: every rule in evaluation order, fired, or the clause that
    decided it did not with the values it compared. A dry run: nothing is changed or sent.
    --config gives the stores (an order naming none is the configuration's default store).
    """
    err = stderr()
    config = load_config_or_exit(config_file, err)
    events, catalogue = default_events(), default_actions(config)
    ruleset = load_or_exit(rules, events, catalogue, err, trace=full)
    data = read_json_or_exit(order_file, err)
    extra = parse_json_or_exit(payload, err) if payload is not None else None
    if not isinstance(data, dict) or (extra is not None and not isinstance(extra, dict)):
        err.print("error: the order and --payload must be JSON objects")
        raise typer.Exit(EXIT_USAGE)
    if "event" not in data:
        data = {"event": DEFAULT_EVENT, "order": data}
    if event is not None:
        data["event"] = event
    if extra is not None:
        data["payload"] = extra
    engine = Engine(ruleset, events=events, actions=catalogue, clock=fixed_clock(now), explain=FULL if full else DECIDING,
                    stores=config.stores if config else None, config=config)
    with engine_errors_exit(err, input_name(order_file)):
        decisions = _process(engine, data)
    typer.echo("\n".join(explanation(decisions, full=full)))


def _process(engine: Engine, data: dict[str, Any]) -> list[Decision]:
    """The decisions of the event and of every event it emits, in a dry run."""
    return engine.process(data, dry_run=True).decisions
