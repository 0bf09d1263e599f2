"""`ruledesk run` without --dry-run performs the jobs of external actions in-process and prints the
decisions of the events they emit; with --dry-run the jobs are shown, not performed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import ruledesk.engine.cli.run as run_command
from ruledesk.engine import ActionSpec, default_actions
from ruledesk.engine.cli import app
from ruledesk.engine.model.context import Emitted
from ruledesk.engine.model.jobs import Done, Failed, JobHandlers

RULES = '''
rule "Ping on import" { when "Order is Imported" then "Ping"(target: "t-{{ order.id }}") }
rule "Confirmed" { when "Order Confirmed" then "Set Order Metadata"(field: "pinged", value: "yes") }
'''


class PingParams(BaseModel):
    target: str


@pytest.fixture
def pinged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[list[str], Path]:
    calls: list[str] = []

    def ping(job, ctx):
        calls.append(job.params["target"])
        if job.params["target"] == "t-bad":
            return Failed("the receiver refused it")
        return Done(events=(Emitted("Order Confirmed", {}),))

    def actions(config=None):
        catalogue = default_actions(config)
        catalogue.register(ActionSpec("Ping", PingParams, job="ping"))
        return catalogue

    monkeypatch.setattr(run_command, "default_actions", actions)
    monkeypatch.setattr(run_command, "builtin_handlers", lambda: JobHandlers({"ping": ping}))
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "ping.rules").write_text(RULES)
    return calls, rules


def test_run_performs_jobs_and_prints_the_decisions_of_the_events_they_emit(pinged) -> None:
    calls, rules = pinged
    orders = json.dumps({"id": "1"}) + "\n" + json.dumps({"id": "bad"}) + "\n"
    result = CliRunner().invoke(app, ["run", "--rules", str(rules), "--format", "json", "-"], input=orders)
    assert calls == ["t-1", "t-bad"]
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["event"], d["order_id"], d["fired"]) for d in decisions] == [
        ("Order is Imported", "1", ["Ping on import"]), ("Order Confirmed", "1", ["Confirmed"]),
        ("Order is Imported", "bad", ["Ping on import"])]
    assert decisions[0]["actions"][0]["status"] == "scheduled"
    assert decisions[1]["order"]["order_metadata"] == {"pinged": "yes"}
    assert decisions[1]["event_id"] == decisions[0]["actions"][0]["job"]["key"] + ".1"
    assert "<stdin>:2: job ping (Ping, job-" in result.stderr and "failed: the receiver refused it" in result.stderr
    assert result.exit_code == 0


def test_dry_run_shows_jobs_and_performs_none(pinged) -> None:
    calls, rules = pinged
    result = CliRunner().invoke(app, ["run", "--dry-run", "--rules", str(rules), "--format", "json", "-"],
                                input=json.dumps({"id": "1"}) + "\n")
    [decision] = [json.loads(line) for line in result.stdout.splitlines()]
    assert calls == []
    assert decision["actions"][0]["status"] == "dry-run" and decision["actions"][0]["job"]["params"] == {"target": "t-1"}


def test_run_takes_stores_and_limits_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", "k-secret-1")
    config = tmp_path / "ruledesk.yaml"
    config.write_text("stores:\n  - name: acme\n    api_key: env:ACME_KEY\n    settings: {region: EU}\n"
                      "limits: {max_depth: 1}\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.rules").write_text('''
        rule "EU" { when "Order is Imported" if store.settings.region == "EU" then "Add Note"(text: "eu") }
        rule "Again" { when "Note Added" then "Add Note"(text: "again") }
    ''')
    lines = "\n".join([json.dumps({"event": "Order is Imported", "order": {"id": "1"}, "store": "acme"}),
                       json.dumps({"event": "Order is Imported", "order": {"id": "2"}, "store": "acne"})]) + "\n"
    result = CliRunner().invoke(app, ["run", "--dry-run", "--config", str(config), "--rules", str(rules),
                                      "--format", "json", "-"], input=lines)
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["event"], d["store"], d["fired"]) for d in decisions] == [
        ("Order is Imported", "acme", ["EU"]), ("Note Added", "acme", ["Again"])]
    assert "depth limit 1 reached" in decisions[1]["stopped"]["reason"]
    assert "<stdin>:2: unknown store 'acne' (did you mean 'acme'?)" in result.stderr
    assert "k-secret-1" not in result.stdout + result.stderr and result.exit_code == 3
    config.write_text("stores:\n  - name: acme\n    api_kee: env:ACME_KEY\n")
    bad = CliRunner().invoke(app, ["run", "--config", str(config), "--rules", str(rules), "-"], input="")
    assert bad.exit_code == 2 and f"{config}:3:5: stores[0].api_kee: unknown key 'api_kee' (did you mean 'api_key'?)" \
        in bad.stderr.replace("\n", "")
