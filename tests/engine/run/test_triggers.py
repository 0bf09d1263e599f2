"""Button and schedule rules run through the embedding API: Engine.press and Engine.run_schedule."""

from __future__ import annotations

import datetime as dt

import pytest

from ruledesk.engine import Engine, EventError

RULES = '''
rule "Resend" {
    when button "Resend to podOS"
    if order.folder != "Shipped"
    then
        "Tag Order"(name: "resend")
        "Move to Folder"(folder: "Print")
}

rule "Nudge stale artwork" {
    when every 6h in folder "Awaiting Artwork"
    if order.date_updated < now() - 2d
    then
        "Add Note"(text: "order {{ order.id }} waits for art")
}

rule "Old button" disabled {
    when button "Old"
    then "Tag Order"(name: "old")
}

rule "Moved" {
    when "Folder is Changed"
    then "Set Order Metadata"(field: "moved_to", value: "{{ event.to_folder }}")
}
'''
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def engine() -> Engine:
    return Engine.from_source(RULES, "triggers.rules", clock=lambda: NOW)


def test_a_button_runs_its_rules_and_their_cascade(engine):
    decisions = engine.press("resend to PODOS", {"id": 7, "folder": "Needs Review"}, dry_run=True).decisions
    assert [d.event for d in decisions] == ['Button "Resend to podOS"', "Folder is Changed"]
    assert decisions[0].fired == ["Resend"]
    assert decisions[0].order["tag_name"] == "resend"
    assert decisions[1].fired == ["Moved"]
    assert decisions[1].order["order_metadata"] == {"moved_to": "Print"}


def test_a_button_condition_is_explained_when_false(engine):
    [decision] = engine.press("Resend to podOS", {"id": 7, "folder": "Shipped"}).decisions
    assert decision.fired == []
    assert decision.explain() == [
        "  ✗  Resend  did not fire",
        '       triggers.rules:4:8  order.folder != "Shipped"  ->  "Shipped" != "Shipped"  ->  false',
    ]


def test_unknown_and_disabled_buttons_are_refused(engine):
    with pytest.raises(EventError, match="no enabled rule has button 'Old'"):
        engine.press("Old", {"id": 1}).decisions
    with pytest.raises(EventError, match="did you mean 'Resend to podOS'"):
        engine.press("Resend to podO", {"id": 1}).decisions


def test_a_scheduled_rule_runs_on_an_order_of_its_folder(engine):
    stale = {"id": 8, "folder": "Awaiting Artwork", "date_updated": "2026-11-20 08:00:00"}
    fresh = dict(stale, id=9, date_updated="2026-11-23 08:00:00")
    [first, note] = engine.run_schedule("Nudge stale artwork", stale).decisions
    assert first.event == 'Every 6h in folder "Awaiting Artwork"'
    assert first.fired == ["Nudge stale artwork"]
    assert note.event == "Note Added"
    [second] = engine.run_schedule("Nudge stale artwork", fresh).decisions
    assert second.fired == []


def test_an_unknown_schedule_is_refused(engine):
    with pytest.raises(EventError, match="no enabled scheduled rule"):
        engine.run_schedule("Nope", {"id": 1}).decisions

