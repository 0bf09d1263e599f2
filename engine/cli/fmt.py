"""`ruledesk fmt`: rewrite rule files in the canonical layout, check or diff them, or format stdin."""

from __future__ import annotations

import difflib
import sys
from typing import Annotated

import typer

from ruledesk.engine.lang.ruleset import format_diagnostics, read_rule_files
from ruledesk.grammar.formatter import FormatError, format_source
from ruledesk.engine.cli.options import EXIT_ERRORS, EXIT_OK, STDIN, PathsArg, RulesOption, count, rule_paths, stderr


def fmt(
    paths: PathsArg = None,
    rules: RulesOption = None,
    check_only: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a file would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff instead of writing files.")] = False,
) -> None:
    """Rewrite rule files in the canonical layout.

    Formats every *.rules file under PATHS and the --rules paths (default: rules.d), keeping
    every comment; a file is written only if it changes. "ruledesk fmt -" formats stdin to
    stdout. Messages go to stderr.
    """
    paths = rule_paths(paths, rules)
    if paths == [STDIN]:
        raise typer.Exit(_format_stdin(check_only, diff))
    if STDIN in paths:
        raise typer.BadParameter('"-" (standard input) cannot be combined with other paths',
                                 param_hint="PATHS")
    err = stderr()
    sources, diagnostics = read_rule_files(paths)
    failed = bool(diagnostics)
    if failed:
        err.print(format_diagnostics(diagnostics.sorted(), sources))
    changed: list[str] = []
    for path, text in sources.items():
        try:
            formatted = format_source(text, path)
        except FormatError as exc:
            err.print(format_diagnostics(exc.diagnostics, {path: text}))
            err.print(f"error: {path} left unchanged")
            failed = True
            continue
        if formatted == text:
            continue
        changed.append(path)
        if diff:
            sys.stdout.write(_unified_diff(text, formatted, path))
        elif check_only:
            err.print(f"would reformat {path}")
        else:
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.write(formatted)
            err.print(f"reformatted {path}")
    verb = "would be reformatted" if check_only or diff else "reformatted"
    err.print(f"{count(len(changed), 'file')} {verb}, {len(sources) - len(changed)} unchanged")
    if failed or (check_only and changed):
        raise typer.Exit(EXIT_ERRORS)


def _format_stdin(check_only: bool, diff: bool) -> int:
    """Format standard input to standard output (or its diff, or only the verdict); the exit code."""
    text = sys.stdin.read()
    try:
        formatted = format_source(text, "<stdin>")
    except FormatError as exc:
        stderr().print(format_diagnostics(exc.diagnostics, {"<stdin>": text}))
        return EXIT_ERRORS
    if diff:
        sys.stdout.write(_unified_diff(text, formatted, "<stdin>"))
    elif not check_only:
        sys.stdout.write(formatted)
    return EXIT_ERRORS if check_only and formatted != text else EXIT_OK


def _unified_diff(before: str, after: str, path: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"{path} (original)", f"{path} (formatted)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
