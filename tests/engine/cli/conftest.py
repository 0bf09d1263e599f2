"""What the command-line tests share: ``cli``, which runs ruledesk's typer app in-process."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ruledesk.engine.cli import app


@pytest.fixture
def cli():
    """``cli(*args, input=None)``: the result of ``ruledesk ARGS`` (exceptions raised, not caught)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke
