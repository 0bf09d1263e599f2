"""`ruledesk replay`: a store the real daemon built, replayed on changed rules, shows exactly the changed events."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ruledesk.engine.cli import app
from ruledesk.engine.daemon.service import Daemon, Options, wait_until
from ruledesk.engine.model.config import Config
from ruledesk.engine.store import open_store
from ruledesk.engine.store.base import Inbound

RULES = """\
rule "Stamp imports" {
    when "Order is Imported"
    then "Set Order Metadata"(field: "seen", value: "yes")
}

rule "Big orders to review" {
    when "Order is Imported"
    if order.order_total >= 100
    then "Move to Folder"(folder: "Needs Review")
}

rule "Tag review" {
    when "Folder is Changed"
    if event.to_folder == "Needs Review"
    then "Tag Order"(name: "review")
}

rule "Details of reviewed orders" {
    when "Order Details Changed"
    if order.folder == "Needs Review"
    then "Add Note"(text: "changed while in review")
}

rule "Review" {
    when button "Review"
    then "Move to Folder"(folder: "Needs Review")
}
"""

FIRST_WEEK = _dt.datetime(2026, 11, 2, 9, 0, tzinfo=_dt.timezone.utc)
SECOND_WEEK = _dt.datetime(2026, 11, 9, 9, 0, tzinfo=_dt.timezone.utc)


def order(order_id: str, total: str) -> dict:
    return {"id": order_id, "order_total": total, "folder": "New",
            "shipping": {"first_name": "Jane", "address1": "1 Main St", "city": "Brooklyn", "country": "US"},
            "order_items": [{"id": f"{order_id}-1", "name": "Tee", "price": total, "quantity": "1", "code": "TEE"}]}


def imported(order_id: str, total: str) -> dict:
    return {"event": "Order is Imported", "order": order(order_id, total)}


def details_changed(order_id: str, total: str) -> dict:
    # the order as the sender knows it (folder "New"): the worker runs the event on the stored order
    return {"event": "Order Details Changed", "order": order(order_id, total)}


def serve(url: str, rules: Path, at: _dt.datetime, events: list[dict], inputs: Path,
          buttons: tuple[tuple[str, str], ...] = ()) -> None:
    """Run the real daemon on ``url`` over ``events`` (and then the button presses), its clock at ``at``."""
    store = open_store(url)
    daemon = Daemon(store, Config(), Options(rules=[str(rules)], watch=False), clock=lambda: at)
    try:
        daemon.start()
        inputs.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
        daemon.follow(str(inputs), keep_following=False)
        assert wait_until(daemon.idle, 20)
        for order_id, label in buttons:
            body = {"button": label, "store": "default", "order_id": order_id, "id": f"button/{order_id}/{label}"}
            daemon.intake.write([Inbound(body["id"], "default", order_id, f'Button "{label}"', json.dumps(body),
                                         kind="button")])
        assert wait_until(daemon.idle, 20)
    finally:
        daemon.stop()
        store.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store the daemon built over two weeks: A (50), B (150) imported the first week; C (70), D
    (30) imported, A and B's details changed, and D's button pressed the second week."""
    root = tmp_path_factory.mktemp("replay")
    rules = root / "rules.d"
    rules.mkdir()
    (rules / "intake.rules").write_text(RULES, encoding="utf-8")
    url = f"sqlite:///{root / 'ruledesk.db'}"
    serve(url, rules, FIRST_WEEK, [imported("A", "50.00"), imported("B", "150.00")], root / "week1.jsonl")
    serve(url, rules, SECOND_WEEK, [imported("C", "70.00"), details_changed("B", "150.00"),
                                    imported("D", "30.00"), details_changed("A", "50.00")], root / "week2.jsonl",
          buttons=(("D", "Review"),))
    with open_store(url, migrate=False) as store:
        events = store.events()
    assert [e.status for e in events] == ["done"] * 7
    return {"root": root, "rules": rules, "url": url, "db": root / "ruledesk.db",
            "ids": {(e.order_id, e.name): e.id for e in events}}


def changed_rules(history: dict, tmp_path: Path, old: str, new: str) -> Path:
    rules = tmp_path / "new-rules"
    shutil.copytree(history["rules"], rules)
    path = rules / "intake.rules"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return rules


@pytest.fixture
def lower_threshold(history: dict, tmp_path: Path) -> Path:
    """The review threshold lowered from 100 to 40: A (50) and C (70) would now go to review."""
    return changed_rules(history, tmp_path, "order.order_total >= 100", "order.order_total >= 40")


def replay(history: dict, *args: str):
    result = CliRunner().invoke(app, ["replay", "--db", history["url"], *args], catch_exceptions=False)
    return result


def shown_events(output: str) -> set[str]:
    return {line.split(" · ")[0] for line in output.splitlines() if " · order " in line}


def dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def test_identical_rules_change_nothing(history: dict) -> None:
    before = dump(history["db"])
    result = replay(history, "--rules", str(history["rules"]))
    assert result.exit_code == 0, result.output
    # B's details change and D's button run on the stored orders (in review, and New), as they did
    assert result.output == "7 events replayed, 0 would change\n"
    assert dump(history["db"]) == before


def test_shows_exactly_the_events_whose_decisions_change(history: dict, lower_threshold: Path) -> None:
    before = dump(history["db"])
    result = replay(history, "--rules", str(lower_threshold))
    assert result.exit_code == 0, result.output
    ids = history["ids"]
    assert shown_events(result.output) == {ids["A", "Order is Imported"], ids["C", "Order is Imported"]}
    a = ids["A", "Order is Imported"]
    assert (f"{a} · order A · Order is Imported\n"
            "  - fired: Stamp imports\n"
            "  + fired: Stamp imports, Big orders to review, Tag review\n"
            '  + action: Big orders to review: Move to Folder(folder: "Needs Review") [done]\n'
            '  + action: Tag review: Tag Order(name: "review") [done]\n'
            "  folder: New -> Needs Review\n") in result.output
    assert result.output.splitlines()[-1] == ("7 events replayed, 2 would change (2 fired differently, "
                                              "2 with other actions, 2 in another folder)")
    assert dump(history["db"]) == before  # nothing written


def test_order_filter(history: dict, lower_threshold: Path) -> None:
    result = replay(history, "--rules", str(lower_threshold), "--order", "A")
    assert result.exit_code == 0, result.output
    assert shown_events(result.output) == {history["ids"]["A", "Order is Imported"]}
    assert result.output.splitlines()[-1].startswith("2 events replayed, 1 would change")


@pytest.mark.parametrize("since", ["2026-11-05", "2026-11-09 09:00:00", str(SECOND_WEEK.timestamp())])
def test_since_filter(history: dict, lower_threshold: Path, since: str) -> None:
    result = replay(history, "--rules", str(lower_threshold), "--since", since)
    assert result.exit_code == 0, result.output
    assert shown_events(result.output) == {history["ids"]["C", "Order is Imported"]}
    assert result.output.splitlines()[-1].startswith("5 events replayed, 1 would change")


def test_json_format(history: dict, lower_threshold: Path) -> None:
    result = replay(history, "--rules", str(lower_threshold), "--format", "json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    *changes, summary = lines
    assert summary == {"summary": {"replayed": 7, "changed": 2, "fired": 2, "actions": 2, "folder": 2, "failed": 0}}
    assert [c["event_id"] for c in changes] == [history["ids"]["A", "Order is Imported"],
                                                history["ids"]["C", "Order is Imported"]]
    assert changes[1] == {
        "event_id": history["ids"]["C", "Order is Imported"], "store": "default", "order_id": "C",
        "event": "Order is Imported",
        "fired": {"before": ["Stamp imports"], "after": ["Stamp imports", "Big orders to review", "Tag review"]},
        "actions": {"removed": [], "added": [
            {"rule": "Big orders to review", "action": "Move to Folder", "status": "done",
             "params": {"folder": "Needs Review"}},
            {"rule": "Tag review", "action": "Tag Order", "status": "done", "params": {"name": "review"}}]},
        "folder": {"before": "New", "after": "Needs Review"}}


def test_changed_action_parameters_only(history: dict, tmp_path: Path) -> None:
    rules = changed_rules(history, tmp_path, 'value: "yes"', 'value: "true"')
    result = replay(history, "--rules", str(rules))
    ids = history["ids"]
    assert shown_events(result.output) == {ids[o, "Order is Imported"] for o in "ABCD"}
    assert '  - action: Stamp imports: Set Order Metadata(field: "seen", value: "yes") [done]' in result.output
    assert "fired:" not in result.output and "folder:" not in result.output
    assert result.output.splitlines()[-1] == ("7 events replayed, 4 would change (0 fired differently, "
                                              "4 with other actions, 0 in another folder)")


def test_an_event_the_new_rules_cannot_run(history: dict, tmp_path: Path) -> None:
    rules = changed_rules(history, tmp_path, 'when button "Review"', 'when button "Check"')
    result = replay(history, "--rules", str(rules))
    assert result.exit_code == 0, result.output
    assert shown_events(result.output) == {history["ids"]["D", 'Button "Review"']}
    assert "  ! cannot run on these rules: no enabled rule has button 'Review'" in result.output
    assert result.output.splitlines()[-1].endswith("1 cannot run)")


def test_rules_with_errors_exit_1_like_run(history: dict, tmp_path: Path) -> None:
    rules = changed_rules(history, tmp_path, '"Move to Folder"(folder: "Needs Review")\n}\n\nrule "Tag',
                          '"Move to Foldr"(folder: "Needs Review")\n}\n\nrule "Tag')
    result = replay(history, "--rules", str(rules))
    assert result.exit_code == 1
    assert "Move to Foldr" in result.output and "nothing was run" in result.output


def test_a_database_that_is_not_there_is_a_usage_error(history: dict, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(app, ["replay", "--db", f"sqlite:///{missing}", "--rules", str(history["rules"])])
    assert result.exit_code == 2
    assert "no such database file" in result.output
    assert not missing.exists()  # never created


def test_a_bad_since_is_a_usage_error(history: dict) -> None:
    result = replay(history, "--rules", str(history["rules"]), "--since", "last tuesday")
    assert result.exit_code == 2
