"""The ruledesk command line: the typer app, one module per command registered on it, and ``main``."""

from __future__ import annotations

import signal

import typer

from ruledesk.engine.cli import (catalogue, check, config, explain, fmt, podos, press, replay, run, serve, test, tick,
                                 version)

app = typer.Typer(
    name="ruledesk",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help like any Unix tool: no boxes, no <bool> types beside flags
)


@app.callback()
def global_options(show_version: version.VersionOption = False) -> None:
    """Rules for Order Desk-style order automation: check, format, test and run rule files."""


app.command()(check.check)
app.command()(fmt.fmt)
app.command()(run.run)
app.command("test")(test.test_command)
app.command()(explain.explain)
app.command()(press.press)
app.command()(tick.tick)
app.command()(replay.replay)
app.command()(catalogue.events)
app.command()(catalogue.actions)
app.command()(serve.serve)
app.add_typer(serve.tokens_app, name="tokens")
app.command()(serve.reload)
app.command()(version.version)
app.add_typer(config.app, name="config")
app.add_typer(podos.app, name="podos")


def main() -> None:
    """Entry point of the ``ruledesk`` console script."""
    if hasattr(signal, "SIGPIPE"):
        # `ruledesk run ... | head`: end quietly when the reader goes away, like any Unix filter,
        # instead of exiting 1 (which means "the rules have errors").
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    app(prog_name="ruledesk")
