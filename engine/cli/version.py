"""`ruledesk version`: the installed version of ruledesk."""

from __future__ import annotations

from importlib import metadata

import typer


def version() -> None:
    """Print ruledesk's version."""
    typer.echo(f"ruledesk {installed_version()}")


def installed_version() -> str:
    try:
        return metadata.version("ruledesk")
    except metadata.PackageNotFoundError:
        return "unknown"
