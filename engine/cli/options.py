"""What every command shares: exit codes, the --rules/--now/--format/--config options, stderr and counting."""

from __future__ import annotations

import datetime as _dt
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ruledesk.engine.model.config import Config, ConfigError, load_config
from ruledesk.engine.testing.cases import parse_now

# Exit codes are a contract (README, "Exit codes").
EXIT_OK = 0
EXIT_ERRORS = 1  # the rules have errors; fmt would reformat or cannot parse; a test failed
EXIT_USAGE = 2  # a bad option or argument, an input that cannot be read or is not valid
EXIT_REJECTED = 3  # run: some input lines were rejected, every other one was processed
EXIT_INTERNAL = 4  # the engine failed on an input it accepted: a bug, reported with the input it failed on

DEFAULT_RULES = "rules.d"
STDIN = "-"


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


class DecisionFormat(str, Enum):
    json = "json"
    table = "table"


# Arguments are described in each command's docstring (the help text), not listed with a type.
PathsArg = Annotated[list[str] | None, typer.Argument(metavar="PATHS", hidden=True, show_default=False)]
RulesOption = Annotated[list[str] | None, typer.Option(
    "--rules", metavar="PATH", help=f"Rule file or directory, repeatable (default: {DEFAULT_RULES}).",
    show_default=False)]

TextOrJsonOption = Annotated[TextOrJson, typer.Option("--format", metavar="[text|json]", help="Output format.")]
DecisionFormatOption = Annotated[DecisionFormat | None, typer.Option(
    "--format", metavar="[json|table]", help="json: one decision per line; table: readable. Default: table on a "
                                            "terminal, json otherwise.", show_default=False)]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Change in-memory copies only; record external "
                                                             "effects instead of performing them.")]
ExplainOption = Annotated[bool, typer.Option("--explain", help='Say why each rule did or did not fire: json adds '
                                                              'an "explain" list, table prints the lines.')]


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


ConfigOption = Annotated[str | None, typer.Option(
    "--config", metavar="FILE", show_default=False,
    help="ruledesk.yaml: the stores (events name them), their settings and the limits.")]


def load_config_or_exit(path: str | None, err: Console) -> Config | None:
    """The configuration, or its located problems on stderr and exit 2; None without --config."""
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(escape(problem), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None


def rule_paths(*given: list[str] | None) -> list[str]:
    """Every path given (check's and fmt's PATHS and --rules together, each once), or the default rules directory."""
    return list(dict.fromkeys(path for paths in given for path in paths or ())) or [DEFAULT_RULES]


def fixed_clock(now: _dt.datetime | None):
    """The engine's clock for --now: always ``now``; None (the real clock) when not given."""
    return (lambda: now) if now is not None else None


def stderr() -> Console:
    """Messages and diagnostics on stderr: plain text, never wrapped (one problem, one line)."""
    return Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
