"""Reading what commands act on (the ruleset, or its diagnostics and exit 1; JSON input) and reporting engine errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ruledesk.engine.lang.ruleset import Ruleset, RulesetError, format_diagnostics, load_ruleset
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.engine.model.order import load_json
from ruledesk.engine.run.engine import EventError
from ruledesk.engine.cli.options import EXIT_ERRORS, EXIT_INTERNAL, EXIT_USAGE, STDIN, count, rule_paths


def input_name(path: str) -> str:
    """How messages name an input file: its path, or <stdin> for "-"."""
    return "<stdin>" if path == STDIN else path


def load_or_exit(rules: list[str] | None, events: Catalogue[EventSpec], actions: Catalogue[ActionSpec],
                 err: Console, *, trace: bool) -> Ruleset:
    """The checked ruleset, or the diagnostics on stderr and exit 1 (nothing runs on rules with errors)."""
    try:
        ruleset = load_ruleset(rule_paths(rules), events, actions, trace=trace)
    except RulesetError as exc:
        err.print(format_diagnostics(exc.diagnostics, exc.sources))
        errors = sum(d.is_error for d in exc.diagnostics)
        err.print(f"the rules have {count(errors, 'error')}; nothing was run")
        raise typer.Exit(EXIT_ERRORS) from None
    if ruleset.diagnostics:
        err.print(format_diagnostics(ruleset.diagnostics, ruleset.sources))
    return ruleset


def read_json_or_exit(path: str, err: Console) -> Any:
    """The JSON in ``path`` ("-": stdin), numbers kept exact; or a message on stderr and exit 2."""
    try:
        text = sys.stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: cannot read {input_name(path)}: {getattr(exc, 'strerror', None) or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    return parse_json_or_exit(text, err)


def parse_json_or_exit(text: str, err: Console) -> Any:
    """``text`` as JSON, numbers kept exact; or a message on stderr and exit 2."""
    try:
        return load_json(text)
    except json.JSONDecodeError as exc:
        err.print(f"error: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        raise typer.Exit(EXIT_USAGE) from None
    except RecursionError:
        err.print("error: invalid JSON: nested too deeply")
        raise typer.Exit(EXIT_USAGE) from None


@contextmanager
def engine_errors_exit(err: Console, name: str | None = None) -> Iterator[None]:
    """Around the engine's work on one input (``name``, if messages should name it): an event or
    order the engine rejects exits 2, a failure of the engine itself exits 4."""
    about = f"{name}: " if name else ""
    try:
        yield
    except EventError as exc:
        err.print(f"error: {about}{exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:  # a bug in the engine, not bad input: say so, with the input it failed on
        err.print(f"error: {about}internal error: {type(exc).__name__}: {exc}")
        raise typer.Exit(EXIT_INTERNAL) from exc
