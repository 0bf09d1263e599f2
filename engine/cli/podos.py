"""`ruledesk podos`: the podOS simulator, and the catalogue look-ups rule authors copy ids and SKUs from."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ruledesk.actions.podos.client import PodosClient, PodosError
from ruledesk.engine.cli.options import EXIT_ERRORS, EXIT_USAGE, load_config_or_exit, stderr
from ruledesk.engine.model.settings import PodosSettings, SecretError, resolve_secret

DEFAULT_CONFIG = "ruledesk.yaml"
SIMULATOR_TOKEN = "sim-token"  # the simulator's token when neither --token nor PODOS_TOKEN gives one

app = typer.Typer(
    name="podos",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="podOS: the simulator and look-ups for rule authors.",
)


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


ConfigFileOption = Annotated[str, typer.Option(
    "--config", metavar="FILE", help="ruledesk.yaml: the store whose podos: settings (url, project, token) are used.")]
StoreOption = Annotated[str | None, typer.Option(
    "--store", metavar="NAME", show_default=False,
    help="The store whose podOS settings to use (default: the only store with podos: settings).")]
FormatOption = Annotated[TableOrJson, typer.Option("--format", metavar="[table|json]", help="Output format.")]


@app.command()
def products(
    style_code: Annotated[str | None, typer.Option("--style-code", metavar="CODE", show_default=False,
                                                   help="Only the products of this style code.")] = None,
    config: ConfigFileOption = DEFAULT_CONFIG,
    store: StoreOption = None,
    output_format: FormatOption = TableOrJson.table,
) -> None:
    """View Base Products: the GFN products, whose id is podos_gfn_product_id."""
    found = _look_up(config, store, lambda client: client.products(style_code))
    _print(found, output_format, "base product", [
        ("id", lambda p: p["id"]), ("style code", lambda p: p["style_code"]), ("name", lambda p: p["name"]),
        ("brand", lambda p: p["brand"]), ("options", lambda p: ", ".join(p["options"]))])


@app.command()
def variants(
    product_id: Annotated[str | None, typer.Option("--product-id", metavar="ID", show_default=False,
                                                   help="Only the variants of this base product.")] = None,
    config: ConfigFileOption = DEFAULT_CONFIG,
    store: StoreOption = None,
    output_format: FormatOption = TableOrJson.table,
) -> None:
    """View GFN Variants: blank products in one exact variation, whose id is podos_gfn_variant_id."""
    found = _look_up(config, store, lambda client: client.variants(product_id))
    _print(found, output_format, "GFN variant", [
        ("id", lambda v: v["id"]), ("product id", lambda v: v["product_id"]), ("sku", lambda v: v["sku"]),
        ("options", lambda v: ", ".join(f"{name}: {value}" for name, value in v["options"].items()))])


@app.command()
def designs(
    config: ConfigFileOption = DEFAULT_CONFIG,
    store: StoreOption = None,
    output_format: FormatOption = TableOrJson.table,
) -> None:
    """The pre-designed variants (artwork included), whose id is podos_variant_id."""
    found = _look_up(config, store, lambda client: client.designs())
    _print(found, output_format, "design", [
        ("id", lambda d: d["id"]), ("sku", lambda d: d["sku"]), ("name", lambda d: d["name"]),
        ("GFN variant id", lambda d: d.get("gfn_variant_id") or "")])


@app.command()
def simulate(
    host: Annotated[str, typer.Option("--host", metavar="H", help="The address the simulator listens on.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="N", help="Its port (0: any free port).")] = 8765,
    catalogue: Annotated[str | None, typer.Option(
        "--catalogue", metavar="FILE", show_default=False,
        help="A catalogue JSON file (products, variants, designs) instead of the built-in one.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", show_default=False,
        help=f"The API token clients must send: env:NAME, file:PATH or the token itself (default: $PODOS_TOKEN, "
             f"else {SIMULATOR_TOKEN}).")] = None,
    ship_after: Annotated[float | None, typer.Option(
        "--ship-after", metavar="SECONDS", min=0.0, show_default=False,
        help="Ship every order this many seconds after it is created.")] = None,
) -> None:
    """Serve the podOS API (docs/podos-api.md) on HTTP, for tests and demos, until interrupted."""
    from ruledesk.actions.podos.simulator import serve

    serve(host, port, token=_simulator_token(token), catalogue=catalogue, ship_after=ship_after)


def _simulator_token(given: str | None) -> str:
    """--token (a reference resolved, or the token itself), else $PODOS_TOKEN, else the simulator's default."""
    if given is None:
        return os.environ.get("PODOS_TOKEN") or SIMULATOR_TOKEN
    if given.startswith(("env:", "file:")):
        try:
            return resolve_secret(given).get_secret_value()
        except SecretError as exc:
            stderr().print(f"error: --token: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
    return given


def _look_up(config_file: str, store: str | None, call: Callable[[PodosClient], list[dict[str, Any]]]) \
        -> list[dict[str, Any]]:
    """``call`` with a client of the chosen store's podOS; a podOS failure is ``error: ...`` and exit 1."""
    err = stderr()
    settings = _podos_settings(config_file, store, err)
    with PodosClient.from_settings(settings, retries=1) as client:
        try:
            return call(client)
        except PodosError as exc:
            failure = str(exc)
    err.print(f"error: podOS at {settings.url}: {failure}")
    raise typer.Exit(EXIT_ERRORS)


def _podos_settings(config_file: str, store: str | None, err: Console) -> PodosSettings:
    """The podOS settings of the store named ``store``, or of the only store that has some, or of the
    configuration's ``default_store`` when several have some (exit 2 otherwise)."""
    config = load_config_or_exit(config_file, err)
    assert config is not None
    with_podos = [s for s in config.stores if s.podos is not None]
    if store is None and len(with_podos) > 1 and config.default_store is not None:
        store = config.default_store  # several stores with podOS: the configuration's default one
    if store is not None:
        named = next((s for s in config.stores if s.name == store), None)
        if named is None:
            known = ", ".join(s.name for s in config.stores) or "none"
            problem = f"no store named {store!r} in {config_file} (stores: {known})"
        elif named.podos is None:
            problem = f"store {store!r} has no podos: settings in {config_file}"
        else:
            return named.podos
    elif len(with_podos) == 1:
        return with_podos[0].podos
    elif not with_podos:
        problem = f"no store in {config_file} has podos: settings (url, project, token)"
    else:
        problem = (f"{len(with_podos)} stores have podos: settings ({', '.join(s.name for s in with_podos)}): "
                   f"choose one with --store (or set default_store)")
    err.print(f"error: {problem}")
    raise typer.Exit(EXIT_USAGE)


def _print(rows: list[dict[str, Any]], output_format: TableOrJson, noun: str,
           columns: list[tuple[str, Callable[[dict[str, Any]], str]]]) -> None:
    if output_format is TableOrJson.json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    title = f"{len(rows)} {noun}" + ("" if len(rows) == 1 else "s")
    table = Table(title=title, title_justify="left")
    for heading, _ in columns:
        table.add_column(heading, no_wrap=heading != "name")
    for row in rows:
        table.add_row(*(escape(str(cell(row))) for _, cell in columns))
    out.print(table)
