"""`ruledesk replay`: the daemon's stored events re-run in a dry run on other rules; the decisions that would change."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Annotated

import typer

from ruledesk.engine.daemon.replay import Replay, ReplayError, Replayed, Summary, open_history
from ruledesk.engine.model.config import Limits
from ruledesk.engine.run.engine import default_actions, default_events
from ruledesk.engine.store.base import StoreError
from ruledesk.engine.cli.inputs import load_or_exit
from ruledesk.engine.cli.options import (EXIT_INTERNAL, EXIT_USAGE, ConfigOption, RulesOption, TextOrJson,
                                         TextOrJsonOption, count, load_config_or_exit, stderr)


def _parse_since(value: str | None) -> float | None:
    """--since: epoch seconds, or an ISO date or date and time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = _dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"not a date, a date and time or epoch seconds: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def replay(
    db: Annotated[str, typer.Option("--db", metavar="URL", show_default=False,
                                    help="The daemon's store: sqlite:///path/file.db or postgresql://...")],
    rules: RulesOption = None,
    since: Annotated[str | None, typer.Option("--since", metavar="TIME", callback=_parse_since, show_default=False,
                                              help="Only events received at or after TIME: YYYY-MM-DD, "
                                                   "YYYY-MM-DD HH:MM:SS (UTC) or epoch seconds.")] = None,
    order_id: Annotated[str | None, typer.Option("--order", metavar="ID", show_default=False,
                                                 help="Only the events of this order.")] = None,
    store: Annotated[str | None, typer.Option("--store", metavar="NAME", show_default=False,
                                              help="Only the events of this store.")] = None,
    config_file: ConfigOption = None,
    output_format: TextOrJsonOption = TextOrJson.text,
) -> None:
    """Replay stored events on other rules and show the decisions that would change.

    Re-runs every processed event the daemon stored in --db, in inbox order, on the --rules
    (default: rules.d) in a dry run, each on the order as it stood when the event was processed,
    and compares with the decisions stored: the rules fired, the actions (rule, action, params,
    status) and the folder the order ended in. Prints each event whose decisions would change,
    then a summary; --format json prints one JSON object per such event and a summary object.
    Nothing is written to the store. Exit 0 whatever changes; 1 if the rules have errors; 2 if
    the store or the configuration cannot be read; 4 if the engine failed on an event.
    """
    err = stderr()
    config = load_config_or_exit(config_file, err)
    events, catalogue = default_events(), default_actions(config)
    ruleset = load_or_exit(rules, events, catalogue, err, trace=False)
    limits = config.limits if config is not None else Limits()
    try:
        history = open_history(db)
    except ReplayError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    replaying = Replay(history, ruleset, events=events, actions=catalogue, stores=config.stores if config else None,
                       max_depth=limits.max_depth, max_firings=limits.max_firings)
    summary = Summary()
    with history:
        try:
            for replayed in replaying.run(since=since, order_id=order_id, store=store):
                summary.add(replayed)
                if replayed.changed:
                    _write(replayed, output_format)
        except StoreError as exc:
            err.print(f"error: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        except Exception as exc:  # a bug in the engine, not in the rules or the history
            err.print(f"error: internal error after {count(summary.replayed, 'event')}: {type(exc).__name__}: {exc}")
            raise typer.Exit(EXIT_INTERNAL) from exc
    if output_format is TextOrJson.json:
        typer.echo(json.dumps({"summary": summary.to_json()}, ensure_ascii=False))
    else:
        typer.echo(_summary_line(summary))


def _write(replayed: Replayed, output_format: TextOrJson) -> None:
    if output_format is TextOrJson.json:
        typer.echo(json.dumps(replayed.to_json(), ensure_ascii=False))
        return
    event = replayed.event
    typer.echo(f"{event.id} · order {event.order_id} · {event.name}")
    if replayed.error is not None:
        typer.echo(f"  ! cannot run on these rules: {replayed.error}")
        return
    before, after = replayed.before, replayed.after
    if replayed.fired_changed:
        typer.echo(f"  - fired: {', '.join(before.fired) or '(none)'}")
        typer.echo(f"  + fired: {', '.join(after.fired) or '(none)'}")
    for action in replayed.removed:
        typer.echo(f"  - action: {action.describe()}")
    for action in replayed.added:
        typer.echo(f"  + action: {action.describe()}")
    if replayed.folder_changed:
        typer.echo(f"  folder: {before.folder} -> {after.folder}")


def _summary_line(summary: Summary) -> str:
    ways = [f"{summary.fired} fired differently", f"{summary.actions} with other actions",
            f"{summary.folder} in another folder"]
    if summary.failed:
        ways.append(f"{summary.failed} cannot run")
    return (f"{count(summary.replayed, 'event')} replayed, {summary.changed} would change"
            + (f" ({', '.join(ways)})" if summary.changed else ""))
