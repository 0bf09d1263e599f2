"""The ruledesk command line: exit codes, diagnostics, fmt, run's JSONL contract, catalogues, the example ruleset."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from ruledesk.engine import Engine
from ruledesk.grammar import ast
from ruledesk.engine.cli import app

from support import VirtualTime

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_RULES = ROOT / "rules.d"
EXAMPLE_ORDERS = ROOT / "examples" / "orders.jsonl"
SECTION_8_KEYS = {"event", "order_id", "ruleset", "fired", "actions", "emitted", "order"}
ACTION_KEYS = {"rule", "action", "params", "status", "error"}

TYPO_RULES = """\
rule "Tag imports" {
    when "Order is Imprted"
    then "Tag Order"(name: "new")
}
"""

ROUTING_RULES = """\
# Route US orders.
rule "US orders to Ready" {
    when "Order is Imported"
    if order.shipping.country == "US"
    then
        "Move to Folder"(folder: "Ready")
}

rule "Remember moves" {
    when "Folder is Changed"
    then "Set Order Metadata"(field: "moved_from", value: "{{ event.from_folder }}")
}
"""


@pytest.fixture
def routing(tmp_path: Path) -> Path:
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "routing.rules").write_text(ROUTING_RULES, encoding="utf-8")
    return rules


def _order(order_id: str, country: str) -> str:
    return json.dumps({"id": order_id, "email": "a@example.com", "order_total": "10.00",
                       "shipping": {"address1": "1 Main St", "country": country},
                       "order_items": [{"id": "1", "code": "TEE", "price": "10", "quantity": "1"}]})


# ---- check -------------------------------------------------------------------------------------


def test_check_reports_an_unknown_event_like_a_compiler(cli, tmp_path):
    path = tmp_path / "typo.rules"
    path.write_text(TYPO_RULES, encoding="utf-8")
    result = cli("check", str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f'{path}:2:10: E201: unknown event "Order is Imprted"'
    assert lines[1] == '        when "Order is Imprted"'
    assert lines[2] == " " * 13 + "^" * len('"Order is Imprted"')
    assert lines[3].startswith('  hint: did you mean "Order is Imported"')
    assert lines[-1] == "1 file, 1 rule: 1 error, 0 warnings"


def test_check_json_lists_every_diagnostic(cli, tmp_path):
    (tmp_path / "a.rules").write_text(TYPO_RULES, encoding="utf-8")
    (tmp_path / "b.rules").write_text('rule "Idle" {\n    when "Order is Imported"\n    then\n}\n', encoding="utf-8")
    result = cli("check", "--format", "json", str(tmp_path))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["files"] == [str(tmp_path / "a.rules"), str(tmp_path / "b.rules")]
    assert report["rules"] == 2
    assert (report["errors"], report["warnings"]) == (1, 1)
    first, second = report["diagnostics"]
    assert (first["file"], first["line"], first["col"], first["code"]) == (str(tmp_path / "a.rules"), 2, 10, "E201")
    assert first["severity"] == "error" and "Order is Imported" in first["suggestion"]
    assert (second["code"], second["severity"]) == ("W501", "warning")


def test_check_fails_on_warnings_only_when_strict(cli, tmp_path):
    path = tmp_path / "idle.rules"
    path.write_text('rule "Idle" {\n    when "Order is Imported"\n    then\n}\n', encoding="utf-8")
    relaxed = cli("check", str(path))
    assert relaxed.exit_code == 0
    assert f"{path}:3:5: W501:" in relaxed.stdout
    assert relaxed.stdout.splitlines()[-1] == "1 file, 1 rule: 0 errors, 1 warning"
    assert cli("check", "--strict", str(path)).exit_code == 1


def test_check_usage_errors_exit_2(cli):
    assert cli("check", "--no-such-option").exit_code == 2
    assert cli("check", "--format", "xml", str(EXAMPLE_RULES)).exit_code == 2


def test_check_reports_missing_paths_and_empty_directories(cli, tmp_path):
    missing = cli("check", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1
    assert f"{tmp_path / 'nowhere'}:0:0: E110:" in missing.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("check", str(empty))
    assert result.exit_code == 1
    assert f"E110: no *.rules files under {empty}" in result.stdout


def test_check_takes_positional_paths_and_rules_together(cli, routing, tmp_path):
    (tmp_path / "typo.rules").write_text(TYPO_RULES, encoding="utf-8")
    both = cli("check", "--format", "json", str(tmp_path / "typo.rules"), "--rules", str(routing))
    assert both.exit_code == 1
    assert json.loads(both.stdout)["files"] == [str(routing / "routing.rules"), str(tmp_path / "typo.rules")]
    only_rules = cli("check", "--rules", str(routing), "--rules", str(routing / "routing.rules"))
    assert only_rules.exit_code == 0
    assert only_rules.stdout.strip() == "1 file, 2 rules: 0 errors, 0 warnings"


def test_check_defaults_to_rules_d(cli, routing, monkeypatch):
    monkeypatch.chdir(routing.parent)
    result = cli("check")
    assert result.exit_code == 0
    assert result.stdout.strip() == "1 file, 2 rules: 0 errors, 0 warnings"


# ---- run ---------------------------------------------------------------------------------------


def test_run_skips_and_counts_malformed_lines(cli, routing, tmp_path):
    orders = tmp_path / "orders.jsonl"
    orders.write_text("\n".join([
        _order("1", "US"),
        "",
        "{not json",
        "[1, 2]",
        json.dumps({"event": "Order is Imprted", "order": {"id": "4"}}),
        json.dumps({"id": "5", "order_total": "lots"}),
        json.dumps({"event": "Folder is Changed", "order": {"id": "6"}, "payload": {}}),
        _order("7", "CA"),
    ]) + "\n", encoding="utf-8")
    result = cli("run", "--rules", str(routing), "--dry-run", "--format", "json", str(orders))
    assert result.exit_code == 3
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{orders}:3: invalid JSON")
    assert errors[1] == f"{orders}:4: expected a JSON object (an event or an order), got an array"
    assert errors[2].startswith(f"{orders}:5: unknown event 'Order is Imprted'")
    assert errors[3].startswith(f"{orders}:6: invalid order: order_total")
    assert errors[4].startswith(f'{orders}:7: bad payload for "Folder is Changed"')
    assert errors[5] == "3 events processed (1 emitted), 5 lines rejected"
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["order_id"], d["event"]) for d in decisions] == [
        ("1", "Order is Imported"), ("1", "Folder is Changed"), ("7", "Order is Imported")]


@pytest.fixture
def engine_fails_on_order_2(monkeypatch):
    """Engine.process raises RuntimeError (a stand-in for an engine bug) for the order with id "2"
    (``ruledesk run`` gives it validated Events; other callers dicts)."""
    process = Engine.process

    def failing(self, data, **options):
        if hasattr(data, "order") and data.order.get("id") == "2" \
                or isinstance(data, dict) and (data.get("id") == "2" or data.get("order", {}).get("id") == "2"):
            raise RuntimeError("boom")
        return process(self, data, **options)

    monkeypatch.setattr(Engine, "process", failing)


def test_run_reports_an_engine_failure_as_an_internal_error_and_goes_on(cli, routing, tmp_path,
                                                                       engine_fails_on_order_2):
    orders = tmp_path / "orders.jsonl"
    orders.write_text("\n".join([_order("1", "US"), "{not json", _order("2", "US"), _order("3", "CA")]) + "\n",
                      encoding="utf-8")
    result = cli("run", "--rules", str(routing), "--dry-run", "--format", "json", str(orders))
    assert result.exit_code == 4
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{orders}:2: invalid JSON")
    assert errors[1] == f"{orders}:3: internal error: RuntimeError: boom"
    assert errors[2] == "3 events processed (1 emitted), 1 line rejected, 1 internal error"
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["order_id"], d["event"]) for d in decisions] == [
        ("1", "Order is Imported"), ("1", "Folder is Changed"), ("3", "Order is Imported")]


def test_explain_reports_an_engine_failure_as_an_internal_error(cli, routing, tmp_path, engine_fails_on_order_2):
    order = tmp_path / "order.json"
    order.write_text(_order("2", "US"), encoding="utf-8")
    result = cli("explain", "--rules", str(routing), str(order))
    assert result.exit_code == 4
    assert result.stderr.strip() == f"error: {order}: internal error: RuntimeError: boom"
    assert result.stdout == ""


def test_run_json_writes_section_8_for_every_event_emitted_ones_included(cli, routing, tmp_path):
    orders = tmp_path / "orders.jsonl"
    orders.write_text(_order("1001", "US") + "\n", encoding="utf-8")
    result = cli("run", "--rules", str(routing), "--dry-run", "--format", "json", str(orders))
    assert result.exit_code == 0, result.stderr
    imported, moved = (json.loads(line) for line in result.stdout.splitlines())
    for decision in (imported, moved):
        assert SECTION_8_KEYS <= decision.keys()
        assert decision["ruleset"].startswith("sha256:")
        assert decision["order_id"] == "1001"
        for action in decision["actions"]:
            assert ACTION_KEYS <= action.keys()
    assert imported["fired"] == ["US orders to Ready"]
    assert imported["actions"][0] == {"rule": "US orders to Ready", "action": "Move to Folder",
                                      "params": {"folder": "Ready"}, "status": "done", "error": None,
                                      "detail": {"from": "New", "to": "Ready"}}
    assert imported["emitted"] == ["Folder is Changed"]
    assert imported["order"]["folder"] == "Ready"
    assert moved["event"] == "Folder is Changed"
    assert moved["fired"] == ["Remember moves"]
    assert moved["actions"][0]["params"] == {"field": "moved_from", "value": "New"}
    assert moved["order"]["order_metadata"] == {"moved_from": "New"}
    assert result.stderr.strip() == "2 events processed (1 emitted), 0 lines rejected"


def test_run_reads_stdin_and_keeps_money_exact(cli, routing):
    line = '{"id": "9", "order_total": 0.10000000000000000001, "shipping": {"country": "US"}}'
    result = cli("run", "--rules", str(routing), "--format", "json", "-", input=line + "\n")
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[0])
    assert first["order"]["order_total"] == "0.10000000000000000001"


def test_run_table_is_readable(cli, routing, tmp_path):
    orders = tmp_path / "orders.jsonl"
    orders.write_text(_order("1001", "US") + "\n" + _order("1002", "CA") + "\n", encoding="utf-8")
    result = cli("run", "--rules", str(routing), "--format", "table", str(orders))
    assert result.exit_code == 0
    assert "line 1 · order 1001 · Order is Imported" in result.stdout
    assert "US orders to Ready" in result.stdout
    assert "↳ Folder is Changed" in result.stdout
    assert "(no rule fired)" in result.stdout  # order 1002 is not in the US


def test_run_stops_on_rule_errors_and_unreadable_input(cli, tmp_path, routing):
    (tmp_path / "typo.rules").write_text(TYPO_RULES, encoding="utf-8")
    orders = tmp_path / "orders.jsonl"
    orders.write_text(_order("1", "US") + "\n", encoding="utf-8")
    bad_rules = cli("run", "--rules", str(tmp_path / "typo.rules"), str(orders))
    assert bad_rules.exit_code == 1
    assert f"{tmp_path / 'typo.rules'}:2:10: E201:" in bad_rules.stderr
    assert bad_rules.stdout == ""
    missing = cli("run", "--rules", str(routing), str(tmp_path / "missing.jsonl"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr


def test_run_limits_are_options(cli, tmp_path):
    rules = tmp_path / "loop.rules"
    rules.write_text('rule "Ping" {\n    when "Folder is Changed"\n'
                     '    then "Move to Folder"(folder: "{{ \'A\' if event.to_folder == \'B\' else \'B\' }}")\n}\n',
                     encoding="utf-8")
    orders = tmp_path / "orders.jsonl"
    orders.write_text(json.dumps({"event": "Folder is Changed", "order": {"id": "1", "folder": "B"},
                                  "payload": {"from_folder": "A", "to_folder": "B"}}) + "\n", encoding="utf-8")
    result = cli("run", "--rules", str(rules), "--format", "json", "--max-depth", "3", str(orders))
    assert result.exit_code == 0
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["depth"] for d in decisions] == [0, 1, 2, 3]
    assert "depth limit 3" in decisions[-1]["stopped"]["reason"]


# ---- press -------------------------------------------------------------------------------------

BUTTON_RULES = """\
rule "Send to review" {
    when button "Needs review"
    if store.name == "acme"
    then
        "Move to Folder"(folder: "Needs Review")
        "Add Note"(text: "Review {{ order.id }}")
}
"""


@pytest.fixture
def buttons(routing: Path) -> Path:
    (routing / "buttons.rules").write_text(BUTTON_RULES, encoding="utf-8")
    return routing


def test_press_runs_the_button_rules_like_run_in_a_dry_run(cli, buttons, tmp_path):
    order = tmp_path / "order.json"
    order.write_text(_order("1001", "US"), encoding="utf-8")
    result = cli("press", "Needs review", "--rules", str(buttons), "--store", "acme", "--format", "json", str(order))
    assert result.exit_code == 0, result.stderr
    pressed, moved, noted = (json.loads(line) for line in result.stdout.splitlines())
    assert SECTION_8_KEYS <= pressed.keys()
    assert (pressed["event"], pressed["order_id"], pressed["fired"]) == ('Button "Needs review"', "1001",
                                                                       ["Send to review"])
    assert [(a["action"], a["status"]) for a in pressed["actions"]] == [("Move to Folder", "done"),
                                                                        ("Add Note", "done")]
    assert pressed["dry_run"] is True and "explain" not in pressed
    assert (moved["event"], moved["fired"], moved["depth"]) == ("Folder is Changed", ["Remember moves"], 1)
    assert moved["order"]["order_metadata"] == {"moved_from": "New"}
    assert (noted["event"], noted["depth"]) == ("Note Added", 1)


def test_press_takes_the_order_and_store_of_an_event_object(cli, buttons):
    line = json.dumps({"event": "Order is Imported", "order": json.loads(_order("8", "US")), "store": "acme"})
    result = cli("press", "Needs review", "--rules", str(buttons), "--format", "json", "-", input=line)
    assert result.exit_code == 0, result.stderr
    pressed = json.loads(result.stdout.splitlines()[0])
    assert (pressed["order_id"], pressed["fired"]) == ("8", ["Send to review"])


def test_press_explains_and_reads_stdin(cli, buttons):
    result = cli("press", "needs REVIEW", "--rules", str(buttons), "--format", "json", "--explain", "-",
                 input=_order("7", "US"))
    assert result.exit_code == 0, result.stderr
    pressed = json.loads(result.stdout.splitlines()[0])
    assert pressed["fired"] == []  # no --store: store.name is not "acme"
    assert pressed["explain"][0]["rule"] == "Send to review"
    assert pressed["explain"][0]["fired"] is False
    assert pressed["explain"][0]["clause"] == 'store.name == "acme"'


def test_press_table_names_the_button_and_the_order(cli, buttons, tmp_path):
    order = tmp_path / "order.json"
    order.write_text(_order("1001", "US"), encoding="utf-8")
    result = cli("press", "Needs review", "--rules", str(buttons), "--store", "acme", "--format", "table",
                 str(order))
    assert result.exit_code == 0, result.stderr
    assert 'order 1001 · Button "Needs review"' in result.stdout
    assert "↳ Folder is Changed" in result.stdout
    assert "folder Needs Review" in result.stdout


def test_press_an_unknown_button_is_a_usage_error_with_a_suggestion(cli, buttons, tmp_path):
    order = tmp_path / "order.json"
    order.write_text(_order("1001", "US"), encoding="utf-8")
    near = cli("press", "Need review", "--rules", str(buttons), str(order))
    assert near.exit_code == 2
    assert near.stderr.strip() == 'error: no enabled rule has button "Need review"; did you mean "Needs review"?'
    assert near.stdout == ""
    far = cli("press", "Ship it", "--rules", str(buttons), str(order))
    assert far.exit_code == 2
    assert far.stderr.strip() == 'error: no enabled rule has button "Ship it"; the buttons are "Needs review"'


def test_press_reports_bad_orders_and_rules_like_explain(cli, buttons, tmp_path):
    invalid = cli("press", "Needs review", "--rules", str(buttons), "-", input='{"id": "1", "order_total": "x"}')
    assert invalid.exit_code == 2
    assert invalid.stderr.startswith("error: invalid order: order_total")
    assert cli("press", "Needs review", "--rules", str(buttons), str(tmp_path / "missing.json")).exit_code == 2
    (tmp_path / "typo.rules").write_text(TYPO_RULES, encoding="utf-8")
    bad_rules = cli("press", "Needs review", "--rules", str(tmp_path / "typo.rules"), "-", input=_order("1", "US"))
    assert bad_rules.exit_code == 1
    assert f"{tmp_path / 'typo.rules'}:2:10: E201:" in bad_rules.stderr


# ---- fmt ---------------------------------------------------------------------------------------

MESSY = """\
# Keep me.
rule   "US orders to Ready"   {   when "Order is Imported"   if order.shipping.country=="US"   then "Move to Folder"(folder:"Ready")   }   # and me
"""


@pytest.fixture
def formatter():
    return pytest.importorskip("ruledesk.grammar.formatter")


def test_fmt_check_then_rewrite(cli, tmp_path, formatter):
    path = tmp_path / "messy.rules"
    path.write_text(MESSY, encoding="utf-8")
    expected = formatter.format_source(MESSY, str(path))
    assert expected != MESSY

    checked = cli("fmt", "--check", str(path))
    assert checked.exit_code == 1
    assert f"would reformat {path}" in checked.stderr
    assert path.read_text(encoding="utf-8") == MESSY

    diffed = cli("fmt", "--diff", str(path))
    assert diffed.exit_code == 0
    assert diffed.stdout.startswith(f"--- {path} (original)\n+++ {path} (formatted)\n")
    assert path.read_text(encoding="utf-8") == MESSY

    rewritten = cli("fmt", str(path))
    assert rewritten.exit_code == 0
    assert f"reformatted {path}" in rewritten.stderr
    text = path.read_text(encoding="utf-8")
    assert text == expected
    assert "# Keep me." in text and "# and me" in text

    again = cli("fmt", "--check", str(path))
    assert again.exit_code == 0
    assert "0 files would be reformatted, 1 unchanged" in again.stderr


def test_fmt_leaves_files_with_syntax_errors_alone(cli, tmp_path, formatter):
    path = tmp_path / "broken.rules"
    broken = 'rule "Broken" {\n    when "Order is Imported"\n    then "Tag Order"(name: "x")\n'
    path.write_text(broken, encoding="utf-8")
    result = cli("fmt", str(path))
    assert result.exit_code == 1
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: E10\d:", result.stderr, re.MULTILINE)
    assert path.read_text(encoding="utf-8") == broken


def test_fmt_takes_rules_like_the_other_commands(cli, tmp_path, formatter):
    path = tmp_path / "messy.rules"
    path.write_text(MESSY, encoding="utf-8")
    result = cli("fmt", "--check", "--rules", str(tmp_path))
    assert result.exit_code == 1
    assert f"would reformat {path}" in result.stderr
    assert cli("fmt", "-", "--rules", str(tmp_path), input=MESSY).exit_code == 2
    assert path.read_text(encoding="utf-8") == MESSY


def test_fmt_stdin_to_stdout(cli, formatter):
    result = cli("fmt", "-", input=MESSY)
    assert result.exit_code == 0
    assert result.stdout == formatter.format_source(MESSY, "<stdin>")
    assert cli("fmt", "--check", "-", input=MESSY).exit_code == 1
    assert cli("fmt", "--check", "-", input=result.stdout).exit_code == 0


# ---- catalogues and version --------------------------------------------------------------------


def test_events_lists_payload_fields(cli):
    text = cli("events")
    assert text.exit_code == 0
    assert "Folder is Changed" in text.stdout and "event.from_folder" in text.stdout
    listed = {entry["name"]: entry for entry in json.loads(cli("events", "--format", "json").stdout)}
    folder = listed["Folder is Changed"]
    assert folder["source"] == "core"
    assert {"name": "from_folder", "type": "str", "required": True,
            "description": "the folder the order left"} in folder["payload"]
    assert listed["Order Not Submitted to podOS Because of Invalid SKU"]["source"] == "podos"


def test_actions_lists_parameters(cli):
    text = cli("actions")
    assert text.exit_code == 0
    assert "Move to Folder" in text.stdout
    listed = {entry["name"]: entry for entry in json.loads(cli("actions", "--format", "json").stdout)}
    move = listed["Move to Folder"]
    assert move["emits"] == ["Folder is Changed"]
    assert [(p["name"], p["required"]) for p in move["params"]] == [("folder", True)]
    assert [(p["name"], p["required"]) for p in listed["Tag Order"]["params"]] == [("name", True), ("color", False)]


def _help_pages() -> list[tuple[str, ...]]:
    commands = typer.main.get_command(app).commands
    assert {"check", "fmt", "run", "test", "explain", "press", "events", "actions", "version"} <= commands.keys()
    return [("--help",)] + [(name, "--help") for name in sorted(commands)]


@pytest.mark.parametrize("args", _help_pages(), ids=" ".join)
def test_help_reads_without_type_noise(cli, args):
    result = cli(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ruledesk ")
    for noise in ("<bool>", "[default: False]", "--no-", "<str>", "<list[str]>"):
        assert noise not in result.stdout


def test_commands_that_read_rules_take_rules_the_same_way(cli):
    for command in ("check", "fmt", "run", "test", "explain", "press"):
        words = " ".join(cli(command, "--help").stdout.split())
        assert "--rules PATH Rule file or directory, repeatable (default: rules.d)." in words, command


def test_version_option_and_command_agree(cli):
    option, command = cli("--version"), cli("version")
    assert option.exit_code == command.exit_code == 0
    assert re.fullmatch(r"ruledesk \S+\n", option.stdout)
    assert option.stdout == command.stdout


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "ruledesk.engine.cli", "version"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0
    assert re.fullmatch(r"ruledesk \S+\n", result.stdout)


# ---- the example ruleset, the example orders, the README ---------------------------------------


def test_example_rules_are_clean(cli):
    result = cli("check", "--strict", str(EXAMPLE_RULES))
    assert result.exit_code == 0, result.stdout
    assert re.fullmatch(r"\d+ files, \d+ rules: 0 errors, 0 warnings\n", result.stdout)


def test_every_event_rule_of_the_example_fires_on_the_example_orders(monkeypatch):
    """The example orders through the example rules, their podOS jobs performed against the
    simulator: as it is, answering 503 (outages: resubmitted, then given up on) and answering 400
    (a refusal).  Every enabled event rule fires, and no action fails."""
    from ruledesk.actions import builtin_handlers
    from ruledesk.actions.podos.simulator import Simulator
    from ruledesk.engine.jobs import MemoryRunner
    from ruledesk.engine.model.config import parse_config

    monkeypatch.setenv("EXAMPLE_PODOS_TOKEN", "example-token")
    lines = EXAMPLE_ORDERS.read_text(encoding="utf-8").splitlines()
    fired: set[str] = set()
    with Simulator(token="example-token") as sim:
        config = parse_config((ROOT / "examples" / "ruledesk.yaml").read_text(encoding="utf-8")
                              .replace("file:examples/podos-demo-token", "env:EXAMPLE_PODOS_TOKEN")
                              .replace("http://127.0.0.1:8765", sim.url)
                              .replace("      poll_interval: 2\n", "      poll_interval: 2\n      retries: 0\n"))
        for fault in (None, {"status": 503}, {"status": 400}):
            sim.clear_faults()
            if fault:
                sim.add_fault(**fault, path="/v1/orders", method="POST")
            clock = VirtualTime()
            engine = Engine.from_paths(EXAMPLE_RULES, stores=config.stores, config=config, clock=clock)
            runner = MemoryRunner(engine, builtin_handlers(), clock=clock, sleep=clock.sleep, max_wait=10 ** 6)
            for number, line in enumerate(lines):
                data = json.loads(line)
                if fault:  # fresh orders: podOS answers an order it has with that order
                    data = {"event": "Order is Imported", "order": data} if "event" not in data else data
                    data["order"] = {**data["order"], "id": f"{data['order']['id']}-{fault['status']}"}
                    data["id"] = f"{fault['status']}-{number}"
                result = engine.process(data)
                runner.submit(result)
                for decision in result.decisions + [d for r in runner.run() for d in r.decisions]:
                    fired.update(decision.fired)
                    assert all(action.status != "failed" for action in decision.actions), decision.to_json()
    event_rules = {rule.name for rule in engine.ruleset.rules
                   if isinstance(rule.trigger, ast.EventTrigger) and not rule.disabled}
    assert event_rules - fired == set()
    assert not any(rule.disabled for rule in engine.ruleset.rules if rule.name in fired)


def test_example_run_processes_every_line(cli):
    result = cli("run", "--rules", str(EXAMPLE_RULES), "--dry-run", "--format", "json", str(EXAMPLE_ORDERS))
    assert result.exit_code == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(SECTION_8_KEYS <= d.keys() for d in decisions)
    incoming = len(EXAMPLE_ORDERS.read_text(encoding="utf-8").splitlines())
    assert sum(d["depth"] == 0 for d in decisions) == incoming
    emitted = sum(d["depth"] > 0 for d in decisions)
    assert emitted > 0
    assert result.stderr.strip() == f"{len(decisions)} events processed ({emitted} emitted), 0 lines rejected"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    title, run_line, test_line = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:3]
    assert title.startswith("# ")
    setup = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
    assert run_line == setup + (".venv/bin/ruledesk serve --follow examples/orders.jsonl --config examples/ruledesk.yaml"
                        " --podos-simulator --mail-sink")  # tests/test_readme.py runs it
    assert test_line == setup + ".venv/bin/pytest -q"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in ci
    assert ci[-1] == test_line


def test_explain_with_config_runs_the_order_in_the_default_store(cli):
    line = EXAMPLE_ORDERS.read_text(encoding="utf-8").splitlines()[4]
    args = ("explain", "--rules", str(EXAMPLE_RULES), "--now", "2026-11-23 12:00:00", "-")
    without = cli(*args, input=line)
    assert without.exit_code == 0, without.stderr
    assert 'store.name == "Acme Prints"  ->  "default" == "Acme Prints"  ->  false' in without.stdout
    configured = cli(*args[:-1], "--config", str(ROOT / "examples" / "ruledesk.yaml"), "-", input=line)
    assert configured.exit_code == 0, configured.stderr
    assert "order.order_metadata.partner is set  ->  null is set  ->  false" in configured.stdout
