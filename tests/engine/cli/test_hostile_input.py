"""Hostile input lines never take `ruledesk run` down: each is a rejected line with its reason, and the run goes on."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ruledesk.engine import Engine, EventError
from ruledesk.engine.cli import app
from support import ROOT


def test_deeply_nested_and_out_of_range_lines_are_rejected_and_the_run_goes_on() -> None:
    lines = ["[" * 100_000 + "]" * 100_000,
             json.dumps({"id": "1", "order_total": "1e999999999"}),
             '{"id": "2", "email": "\\ud800"}',
             json.dumps({"event": "Shipment is Added", "order": {"id": "3"},
                         "payload": {"tracking_number": "1", "carrier_code": "UPS", "extra": 10 ** 4000}}),
             json.dumps({"id": "4"})]
    result = CliRunner().invoke(app, ["run", "--dry-run", "--rules", str(ROOT / "rules.d"), "--format", "json", "-"],
                                input="\n".join(lines) + "\n")
    assert result.exit_code == 3
    assert "<stdin>:1: invalid JSON: nested too deeply" in result.stderr
    assert "<stdin>:2: invalid order: order_total" in result.stderr
    assert "<stdin>:3: invalid order: email" in result.stderr
    assert '<stdin>:4: bad payload for "Shipment is Added"' in result.stderr
    assert [json.loads(line)["order_id"] for line in result.stdout.splitlines()][0] == "4"


def test_a_payload_beyond_the_bounds_is_an_event_error() -> None:
    engine = Engine.from_source('rule "R" { when "Note Added" then "Tag Order"(name: "n") }')
    with pytest.raises(EventError, match='bad payload for "Note Added"'):
        engine.process({"event": "Note Added", "order": {"id": "1"}, "payload": {"note": "x",
                                                                                  "huge": 10 ** 5000}})
