"""`ruledesk press "LABEL" --order ID --db URL`: the press goes through the daemon's inbox and its decisions are printed."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from support import ROOT
from ruledesk.engine.cli import app
from ruledesk.engine.daemon.service import Daemon, Options, wait_until
from ruledesk.engine.model.config import Config
from ruledesk.engine.store import open_store


def _daemon(db: str) -> tuple[Daemon, object]:
    store = open_store(db)
    daemon = Daemon(store, Config(), Options(rules=[str(ROOT / "rules.d")], watch=False, poll=0.02))
    daemon.start()
    return daemon, store


def test_press_runs_through_the_daemon_and_prints_its_decisions(tmp_path):
    db = f"sqlite:///{tmp_path}/d.db"
    daemon, store = _daemon(db)
    try:
        line = (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines()[0]
        daemon.intake.write([daemon.intake.one(json.loads(line))])
        order_id = json.loads(line)["id"]
        assert wait_until(lambda: store.order("default", order_id) is not None, 10)
        result = CliRunner().invoke(app, ["press", "Re-run intake", "--order", order_id, "--db", db,
                                          "--format", "json", "--wait", "20"])
        assert result.exit_code == 0, result.output
        decisions = [json.loads(text) for text in result.stdout.splitlines()]
        assert decisions[0]["event"] == 'Button "Re-run intake"' and decisions[0]["order_id"] == order_id
        assert decisions[0]["fired"] and "why" not in decisions[0]
        stored = [json.loads(text) for text in store.decisions("default", order_id)]
        pressed = [d["event_id"] for d in stored if d["event_id"].startswith("button/")]  # not its jobs' later events
        assert pressed[-len(decisions):] == [d["event_id"] for d in decisions]
    finally:
        daemon.stop()
        store.close()


def test_press_for_an_order_the_store_does_not_have_is_a_usage_error(tmp_path):
    db = f"sqlite:///{tmp_path}/d.db"
    open_store(db).close()
    result = CliRunner().invoke(app, ["press", "Re-run intake", "--order", "404", "--db", db])
    assert result.exit_code == 2 and "no order '404'" in result.output


def test_press_without_a_daemon_says_it_was_only_queued(tmp_path):
    db = f"sqlite:///{tmp_path}/d.db"
    daemon, store = _daemon(db)
    line = (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines()[0]
    daemon.intake.write([daemon.intake.one(json.loads(line))])
    order_id = json.loads(line)["id"]
    assert wait_until(lambda: store.order("default", order_id) is not None, 10)
    daemon.stop()
    store.close()
    result = CliRunner().invoke(app, ["press", "Re-run intake", "--order", order_id, "--db", db, "--wait", "0.5"])
    assert result.exit_code == 4 and "no daemon ran it" in result.output
    with open_store(db) as again:
        assert again.counts()["events_pending"] == 1
