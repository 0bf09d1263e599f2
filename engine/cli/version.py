"""`ruledesk version` and `ruledesk --version`: the installed version of ruledesk."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer


def version() -> None:
    """Print ruledesk's version."""
    typer.echo(f"ruledesk {installed_version()}")


def installed_version() -> str:
    try:
        return metadata.version("ruledesk")
    except metadata.PackageNotFoundError:
        return "unknown"


def _version_flag(value: bool) -> None:
    if value:
        version()
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option("--version", is_eager=True, callback=_version_flag,
                                             help="Print ruledesk's version and exit.")]
