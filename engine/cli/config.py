"""`ruledesk config check` and `ruledesk config schema`: validate ruledesk.yaml, and the JSON Schema editors validate it with."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ruledesk.engine.model.config import Config, ConfigError, load_config
from ruledesk.engine.cli.options import EXIT_ERRORS, TextOrJson, TextOrJsonOption, count

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # the dialect pydantic writes
SECRET = "a secret: env:NAME or file:PATH"
SECRET_PATTERN = r"^(env|file):.+"  # a secret written out is refused by load_config; editors flag it too

app = typer.Typer(
    name="config",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Check ruledesk.yaml or print its JSON Schema.",
)

FileArg = Annotated[str, typer.Argument(metavar="FILE", hidden=True, show_default=False)]


@app.command()
def check(file: FileArg, output_format: TextOrJsonOption = TextOrJson.text) -> None:
    """Check a configuration file and report every problem at once.

    Loads FILE as `ruledesk run --config` would, resolving its secrets (env:NAME, file:PATH) without
    ever printing them, and prints each problem as FILE:LINE:COL: key: problem, or a one-line summary
    of the stores and email. Exit 1 when the configuration has problems.
    """
    try:
        config = load_config(file)
    except ConfigError as exc:
        config, problems = None, exc.problems
    else:
        problems = []
    stores = [store.name for store in config.stores] if config is not None else []
    if output_format is TextOrJson.json:
        report = {"file": file, "ok": config is not None, "problems": problems, "stores": stores}
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif config is None:
        for problem in problems:
            typer.echo(problem)
        typer.echo(f"{file}: {count(len(problems), 'problem')}")
    else:
        names = f" ({', '.join(stores)})" if stores else ""
        email = "email configured" if config.email is not None else "no email"
        typer.echo(f"{file}: {count(len(stores), 'store')}{names}, {email}")
    if config is None:
        raise typer.Exit(EXIT_ERRORS)


@app.command()
def schema() -> None:
    """Print the JSON Schema of ruledesk.yaml (for editors).

    Editors that read JSON Schema validate and complete ruledesk.yaml with it; secrets are strings
    written env:NAME or file:PATH.
    """
    typer.echo(json.dumps(config_schema(), indent=2, ensure_ascii=False))


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``Config`` by alias (``from:``), its secrets described as the references they are."""
    schema = Config.model_json_schema(by_alias=True)
    schema.pop("title", None)
    _describe_secrets(schema)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "ruledesk configuration (ruledesk.yaml)", **schema}


def _describe_secrets(node: Any) -> bool:
    """Give every secret (pydantic's ``format: password``) the reference pattern and a description
    saying how to write it, and say so in the description of a property holding one (``api_key``:
    a secret or null); True when ``node`` is a secret or may be one."""
    if isinstance(node, list):
        return any([_describe_secrets(item) for item in node])  # a list, not a generator: visit every item
    if not isinstance(node, dict):
        return False
    if node.get("format") == "password":
        node.update(pattern=SECRET_PATTERN, description=SECRET)
        return True
    may_be_secret = False
    for key, value in node.items():
        if key == "properties":
            for prop in value.values():
                description = prop.get("description", "")
                if _describe_secrets(prop) and "env:NAME" not in description:
                    prop["description"] = f"{description.removesuffix(' (a secret)')} ({SECRET})".lstrip()
        elif _describe_secrets(value) and key == "anyOf":
            may_be_secret = True
    return may_be_secret
