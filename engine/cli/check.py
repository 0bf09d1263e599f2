"""`ruledesk check`: parse and check rule files, every problem at once, as text or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ruledesk.grammar import ast
from ruledesk.engine.lang.ruleset import check_sources, read_rule_files
from ruledesk.engine.run.engine import default_actions, default_events
from ruledesk.engine.cli.options import (EXIT_ERRORS, ConfigOption, PathsArg, RulesOption, TextOrJson,
                                         TextOrJsonOption, count, load_config_or_exit, rule_paths, stderr)


def check(
    paths: PathsArg = None,
    rules: RulesOption = None,
    output_format: TextOrJsonOption = TextOrJson.text,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
    config_file: ConfigOption = None,
) -> None:
    """Check rule files and report every problem at once.

    Parses and type-checks every *.rules file under PATHS and the --rules paths (default:
    rules.d) and prints every diagnostic (FILE:LINE:COL, a code, a suggestion) and a summary on
    stdout. Exit 1 when the rules have errors (with --strict, warnings too). Send Email's literal
    template names are looked up in the --config file's email templates folder (default: templates/
    in the current folder).
    """
    config = load_config_or_exit(config_file, stderr())
    sources, diagnostics = read_rule_files(rule_paths(paths, rules))
    result, diagnostics = check_sources(sources, default_events(), default_actions(config), diagnostics)
    rules = sum(isinstance(item, ast.Rule) for module in result.modules for item in module.items)
    errors, warnings = diagnostics.errors, diagnostics.warnings
    if output_format is TextOrJson.json:
        report = {"files": sorted(sources), "rules": rules, "errors": len(errors), "warnings": len(warnings),
                  "diagnostics": [d.to_json() for d in diagnostics.sorted()]}
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for diagnostic in diagnostics.sorted():
            typer.echo(diagnostic.format(sources.get(diagnostic.loc.file)))
        typer.echo(f"{count(len(sources), 'file')}, {count(rules, 'rule')}: "
                   f"{count(len(errors), 'error')}, {count(len(warnings), 'warning')}")
    if errors or (strict and warnings):
        raise typer.Exit(EXIT_ERRORS)
