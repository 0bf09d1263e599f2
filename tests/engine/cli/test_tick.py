"""`ruledesk tick` (scheduled rules run once, over an orders file or queued for the daemon) and `ruledesk press
--order ORDER.json` (a button outside the daemon, dry run or --perform), with Order Desk's documented pattern:
"Set Order Metadata Timestamp", then a scheduled rule acts once a delay has passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine.store import open_store
from ruledesk.engine.store.base import Inbound

# The worked example of docs/schedules.md: stamp the moment an order starts waiting for artwork; a
# scheduled rule looks every hour and acts on the orders that have waited two days.
WAITING_RULES = '''
rule "Stamp when artwork is awaited" {
    when "Folder is Changed"
    if event.to_folder == "Awaiting Artwork"
    then "Set Order Metadata Timestamp"(field: "awaiting_since")
}

rule "Nudge after two days" {
    when every 1h in folder "Awaiting Artwork"
    if date(order.order_metadata.awaiting_since) < now() - 2d
    then
        "Add Note"(text: "waited for artwork since {{ order.order_metadata.awaiting_since }}")
        "Move to Folder"(folder: "Needs Review")
}
'''


@pytest.fixture
def waiting(tmp_path: Path) -> Path:
    rules = tmp_path / "waiting.rules"
    rules.write_text(WAITING_RULES, encoding="utf-8")
    return rules


def decisions(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def stamped_order(cli, rules: Path, tmp_path: Path, at: str) -> Path:
    """The order as `ruledesk run` leaves it after it moved to Awaiting Artwork at ``at``."""
    event = {"event": "Folder is Changed", "order": {"id": "7", "folder": "Awaiting Artwork"},
             "payload": {"from_folder": "New", "to_folder": "Awaiting Artwork"}}
    result = cli("run", "--rules", str(rules), "--now", at, "--format", "json", "-", input=json.dumps(event))
    assert result.exit_code == 0, result.stderr
    [decision] = decisions(result.stdout)
    assert decision["fired"] == ["Stamp when artwork is awaited"]
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(decision["order"]) + "\n", encoding="utf-8")
    return path


def test_the_timestamp_then_a_scheduled_rule_acts_only_after_the_delay(cli, waiting, tmp_path):
    orders = stamped_order(cli, waiting, tmp_path, "2026-12-01 10:00:00")
    assert json.loads(orders.read_text())["order_metadata"]["awaiting_since"] == "2026-12-01 10:00:00"
    early = cli("tick", str(orders), "--rules", str(waiting), "--now", "2026-12-03 09:59:00", "--format", "json")
    assert early.exit_code == 0, early.stderr
    [run] = decisions(early.stdout)
    assert run["event"] == 'Every 1h in folder "Awaiting Artwork"' and run["fired"] == []
    assert run["event_id"] == "Nudge after two days@2026-12-03T09:00:00Z/default/7"
    late = cli("tick", str(orders), "--rules", str(waiting), "--now", "2026-12-03 10:00:01", "--format", "json")
    assert late.exit_code == 0, late.stderr
    ran = decisions(late.stdout)
    assert ran[0]["fired"] == ["Nudge after two days"]
    assert [d["event"] for d in ran[1:]] == ["Note Added", "Folder is Changed"]
    assert ran[-1]["order"]["folder"] == "Needs Review"
    assert ran[-1]["order"]["order_notes"][0]["content"] == "waited for artwork since 2026-12-01 10:00:00"
    assert "1 scheduled run, 0 lines rejected" in late.stderr


def test_tick_runs_a_scheduled_rule_only_on_the_orders_in_its_folder(cli, waiting, tmp_path):
    orders = tmp_path / "orders.jsonl"
    orders.write_text("\n".join(json.dumps(o) for o in [
        {"id": "1", "folder": "New", "order_metadata": {"awaiting_since": "2020-01-01 00:00:00"}},
        {"event": "Order is Imported", "store": "acme",
         "order": {"id": "2", "folder": "Awaiting Artwork", "order_metadata": {"awaiting_since": "2020-01-01 00:00:00"}}},
        "not an order",
    ]) + "\n", encoding="utf-8")
    result = cli("tick", str(orders), "--rules", str(waiting), "--now", "2026-12-03 10:00:00", "--format", "json")
    assert result.exit_code == 3  # the third line is rejected, the others ran
    ran = decisions(result.stdout)
    assert {(d["order_id"], d["store"]) for d in ran} == {("2", "acme")}
    assert f"{orders}:3: expected a JSON object" in result.stderr


def test_tick_without_scheduled_rules_says_so(cli, tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text('rule "r" { when "Order is Imported" then "Tag Order"(name: "x") }', encoding="utf-8")
    orders = tmp_path / "o.jsonl"
    orders.write_text('{"id": "1"}\n', encoding="utf-8")
    result = cli("tick", str(orders), "--rules", str(rules))
    assert result.exit_code == 0 and result.stdout == ""
    assert "no enabled scheduled rule" in result.stderr


def test_tick_with_db_queues_each_period_of_each_order_once(cli, waiting, tmp_path):
    db = f"sqlite:///{tmp_path / 'ruledesk.db'}"
    with open_store(db) as store:
        for order_id, folder in (("1", "Awaiting Artwork"), ("2", "New"), ("3", "Awaiting Artwork")):
            order = {"id": order_id, "folder": folder}
            body = json.dumps({"event": "Order is Imported", "order": order, "store": "acme", "id": f"imp-{order_id}"})
            store.enqueue([Inbound(f"imp-{order_id}", "acme", order_id, "Order is Imported", body)], 0.0)
            store.commit(store.claim("t", 0.0, 30.0), [], [], {("acme", order_id): (json.dumps(order), folder)}, 0.0)
    first = cli("tick", "--db", db, "--rules", str(waiting), "--now", "2026-12-03 10:00:00")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == "2 scheduled runs queued (0 queued before)"
    again = cli("tick", "--db", db, "--rules", str(waiting), "--now", "2026-12-03 10:30:00")
    assert again.stdout.strip() == "0 scheduled runs queued (2 queued before)"
    next_hour = cli("tick", "--db", db, "--rules", str(waiting), "--now", "2026-12-03 11:00:00")
    assert next_hour.stdout.strip() == "2 scheduled runs queued (0 queued before)"
    with open_store(db) as store:
        queued = sorted(e.id for e in store.events() if e.kind == "schedule")
    assert queued == ["Nudge after two days@2026-12-03T10:00:00Z/acme/1", "Nudge after two days@2026-12-03T10:00:00Z/acme/3",
                      "Nudge after two days@2026-12-03T11:00:00Z/acme/1", "Nudge after two days@2026-12-03T11:00:00Z/acme/3"]


def test_tick_needs_a_file_or_a_store_not_both(cli, waiting, tmp_path):
    assert cli("tick", "--rules", str(waiting)).exit_code == 2
    orders = tmp_path / "o.jsonl"
    orders.write_text('{"id": "1"}\n', encoding="utf-8")
    both = cli("tick", str(orders), "--db", f"sqlite:///{tmp_path / 'x.db'}", "--rules", str(waiting))
    assert both.exit_code == 2 and "not both" in both.stderr


# ---- press --order ORDER.json ------------------------------------------------------------------

TOKEN = "press-s3cret-token"
PRESS_RULES = '''
rule "Resend to podOS" {
    when button "Resend to podOS"
    then "Submit Order to podOS"
}
rule "Note the submission" {
    when "After Order Submitted to podOS"
    then "Add Note"(text: "podOS order {{ event.podos_order_id }}")
}
'''


def press_setup(tmp_path: Path, url: str) -> tuple[Path, Path, Path]:
    rules = tmp_path / "press.rules"
    rules.write_text(PRESS_RULES, encoding="utf-8")
    (tmp_path / "token").write_text(TOKEN, encoding="utf-8")
    config = tmp_path / "ruledesk.yaml"
    config.write_text(f"""stores:
  - name: acme
    podos: {{project: acme, token: "file:{tmp_path / 'token'}", url: "{url}", retries: 0}}
""", encoding="utf-8")
    order = tmp_path / "order.json"
    order.write_text(json.dumps({"id": "42", "order_items": [
        {"id": "1", "code": "POSTER", "quantity": 1, "price": "10", "metadata": {"podos_variant_id": "pv-55012"}}]}),
        encoding="utf-8")
    return rules, config, order


def test_press_with_an_order_file_is_a_dry_run_that_shows_the_request(cli, tmp_path):
    with Simulator(token=TOKEN, port=0) as sim:
        rules, config, order = press_setup(tmp_path, sim.url)
        result = cli("press", "Resend to podOS", "--order", str(order), "--rules", str(rules), "--config", str(config),
                     "--format", "json")
        assert result.exit_code == 0, result.stderr
        [pressed, scheduled] = decisions(result.stdout)
        [action] = pressed["actions"]
        assert action["status"] == "dry-run" and action["job"]["kind"] == "podos.submit"
        assert pressed["store"] == "acme" and scheduled["event"] == "Order Scheduled to podOS"
        assert sim.orders() == []
        assert TOKEN not in result.stdout + result.stderr


def test_press_perform_sends_the_order_to_podos_outside_the_daemon(cli, tmp_path):
    with Simulator(token=TOKEN, port=0) as sim:
        rules, config, order = press_setup(tmp_path, sim.url)
        result = cli("press", "Resend to podOS", "--order", str(order), "--rules", str(rules), "--config", str(config),
                     "--perform", "--format", "json")
        assert result.exit_code == 0, result.stderr
        [submitted] = sim.orders()
        assert submitted["order_desk_order_id"] == "42"
        ran = decisions(result.stdout)
        assert ran[0]["actions"][0]["status"] == "scheduled"
        [noted] = [d for d in ran if d["event"] == "After Order Submitted to podOS"]
        assert noted["order"]["order_notes"][-1]["content"] == f"podOS order {submitted['id']}"
        assert TOKEN not in result.stdout + result.stderr
