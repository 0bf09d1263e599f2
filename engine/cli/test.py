"""`ruledesk test`: rule test cases through the engine in dry-run, with coverage, formats and --watch."""

from __future__ import annotations

import datetime as _dt
import json
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from ruledesk.engine.run.engine import default_actions, default_events
from ruledesk.engine.cli.options import (EXIT_ERRORS, EXIT_OK, NowOption, RulesOption, TextOrJson, rule_paths)


class TestFormat(str, Enum):
    __test__ = False  # not a pytest class

    text = "text"
    json = "json"
    junit = "junit"


def test_command(
    tests: Annotated[list[str] | None, typer.Argument(metavar="TESTS", hidden=True, show_default=False)] = None,
    rules: RulesOption = None,
    pattern: Annotated[str | None, typer.Option("-k", metavar="PATTERN", help="Run only the cases whose "
                                                "FILE::NAME contains PATTERN (any case).")] = None,
    output_format: Annotated[TestFormat, typer.Option("--format", metavar="[text|json|junit]",
                                                                      help="junit is XML for CI.")]
    = TestFormat.text,
    coverage: Annotated[bool, typer.Option("--coverage", help="Report the rules no case fired and the clauses "
                                                              "never seen true or false.")] = False,
    coverage_format: Annotated[TextOrJson, typer.Option("--coverage-format", metavar="[text|json]",
                                                                             help="Coverage as a table or JSON.")]
    = TextOrJson.text,
    fail_under: Annotated[float | None, typer.Option("--fail-under", metavar="PCT", min=0, max=100,
                                                     help="Exit 1 when the total coverage is under PCT "
                                                          "(implies --coverage).", show_default=False)] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Run again on every change of the rules, tests or "
                                                        "fixtures (Ctrl-C stops).")] = False,
    now: NowOption = None,
) -> None:
    """Run the rule test cases (*_test.yaml) in a dry run.

    TESTS are test files, or directories searched for *_test.yaml (default: the *_test.yaml files
    under the rule paths). Exit 1 when a case fails or is an error, when no case is found, or when
    the coverage is under --fail-under.
    """
    from ruledesk.engine.testing.runner import watch as watch_paths

    paths = rule_paths(rules)
    options = _TestOptions(paths, tests or [], pattern, output_format, coverage or fail_under is not None,
                           coverage_format, fail_under, now)
    if not watch:
        raise typer.Exit(_run_test_suite(options))
    console = Console(highlight=False)
    outcome = [EXIT_OK]

    def rerun() -> None:
        console.clear()
        outcome[0] = _run_test_suite(options)
        watched = list(dict.fromkeys(paths + (tests or [])))
        typer.echo(f"watching {', '.join(watched)} for changes (Ctrl-C stops)", err=True)

    try:
        watch_paths(paths + (tests or []), rerun)
    except KeyboardInterrupt:
        pass
    raise typer.Exit(outcome[0])


@dataclass
class _TestOptions:
    rule_paths: list[str]
    tests: list[str]
    pattern: str | None
    output_format: TestFormat
    coverage: bool
    coverage_format: TextOrJson
    fail_under: float | None
    now: _dt.datetime | None


def _run_test_suite(options: _TestOptions) -> int:
    """One run of ``ruledesk test``: print the results in the chosen format; the exit code."""
    from ruledesk.engine.testing.coverage import measure
    from ruledesk.engine.testing.runner import RULES_CASE, run_tests
    from ruledesk.engine.testing.results import ERROR, FAILED, PASSED

    events, catalogue = default_events(), default_actions()
    run = run_tests(options.rule_paths, options.tests, pattern=options.pattern, now=options.now, events=events,
                    actions=catalogue)
    report = None
    if options.coverage and run.ruleset is not None:
        report = measure(run.ruleset, run.decisions(), events=events, actions=catalogue)
    under = options.fail_under is not None and (report is None or not report.meets(options.fail_under))
    under_text = ""
    if under:
        shown = f"{report.total_percent:.1f}%" if report is not None else "not measured"
        under_text = f"coverage {shown} is under --fail-under {options.fail_under:g}%"
    nothing = "" if run.results else (
        f"no test case matches -k {options.pattern!r}" if options.pattern and run.test_files
        else "no test cases found in " + ", ".join(options.tests or options.rule_paths)
        + " (test files are named *_test.yaml)")

    if options.output_format is TestFormat.json:
        data = run.to_json()
        if report is not None:
            data["coverage"] = report.to_json()
        if options.fail_under is not None:
            data["fail_under"] = {"percent": options.fail_under, "met": not under}
        if nothing:
            data["error"] = nothing
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif options.output_format is TestFormat.junit:
        sys.stdout.write(run.to_junit())
        for line in filter(None, [_coverage_text(report, options), under_text, nothing, run.summary()]):
            typer.echo(line, err=True)
    else:
        labels = {PASSED: "PASS", FAILED: "FAIL", ERROR: "ERROR"}
        for result in run.results:
            label = labels[result.status]
            shown = result.id if result.status == PASSED or result.name == RULES_CASE else result.located_id
            typer.echo(f"{label} {shown}")
            for message in result.messages:
                typer.echo("\n".join("    " + line for line in message.split("\n")))
        for line in filter(None, [_coverage_text(report, options), under_text, nothing, run.summary()]):
            typer.echo(line)
    return EXIT_OK if run.ok and not under else EXIT_ERRORS


def _coverage_text(report, options: _TestOptions) -> str:
    if report is None:
        return ""
    if options.coverage_format is TextOrJson.json:
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False)
    return report.format()
