"""`ruledesk test` and engine/testing/: case files, expectations and their diffs, output formats, watch."""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ruledesk.engine.cli import app
from ruledesk.engine.testing.cases import deep_merge, load_cases
from ruledesk.engine.testing.runner import Debouncer, run_tests, watch

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_RULES = ROOT / "rules.d"

ROUTING = """\
let pod_countries = ["US", "CA", "GB"]

rule "Stamp" priority 10 {
    when "Order is Imported"
    then "Set Order Metadata"(field: "stamped", value: "yes")
}

rule "Route POD orders" {
    when "Order is Imported"
    if order.shipping.country in pod_countries
       and order.order_total > 20
    then
        "Move to Folder"(folder: "Print Queue")
        "Add Note"(text: "Order {{ order.id }} queued")
}

rule "Remember moves" {
    when "Folder is Changed"
    then "Set Order Metadata"(field: "from", value: "{{ event.from_folder }}")
}
"""

ORDER = {"id": "1001", "email": "ana@example.com", "order_total": "35.00",
         "shipping": {"address1": "1 Main St", "country": "US"},
         "order_items": [{"id": "1", "code": "TEE", "price": "35.00", "quantity": "1"}]}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rules.d with one rule file and a fixture; the tests write the case files.  cwd is the project."""
    rules = tmp_path / "rules.d"
    (rules / "fixtures").mkdir(parents=True)
    (rules / "routing.rules").write_text(ROUTING, encoding="utf-8")
    (rules / "fixtures" / "us.json").write_text(json.dumps(ORDER, indent=2), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ruledesk(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


PASSING = """\
cases:
  - name: US orders go to the print queue
    order: fixtures/us.json
    expect:
      fired: [Stamp, Route POD orders, Remember moves]
      emitted: [Folder is Changed, Note Added]
      order: {folder: Print Queue, order_metadata: {stamped: "yes", from: New}}
"""


# ---- the text report ---------------------------------------------------------------------------


def test_passing_cases_print_pass_lines_and_the_summary(project):
    write(project / "rules.d" / "routing_test.yaml", PASSING)
    result = ruledesk("test")
    assert result.exit_code == 0, result.stdout
    assert result.stdout == ("PASS rules.d/routing_test.yaml::US orders go to the print queue\n"
                             "1 passed, 0 failed\n")


def test_a_broken_expectation_shows_expected_and_actual_and_why_the_rule_did_not_fire(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: a French order
    order: fixtures/us.json
    overrides: {shipping: {country: FR}}
    expect:
      fired: [Stamp, Route POD orders]
      order:
        folder: Print Queue
""")
    result = ruledesk("test")
    assert result.exit_code == 1
    assert result.stdout == (
        "FAIL rules.d/routing_test.yaml:2::a French order\n"
        '    rules.d/routing_test.yaml:6: fired: expected ["Stamp", "Route POD orders"], got ["Stamp"]\n'
        '      "Route POD orders" did not fire on "Order is Imported": its condition is false\n'
        '          rules.d/routing.rules:10:8  order.shipping.country in pod_countries  ->  '
        '"FR" in ["US", "CA", "GB"]  ->  false\n'
        '    rules.d/routing_test.yaml:8: order.folder: expected "Print Queue", got "New"\n'
        "0 passed, 1 failed\n")


def test_an_unexpected_rule_and_a_rule_that_is_not_triggered_are_explained(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: stamp only
    order: fixtures/us.json
    expect:
      fired_includes: [Remember moves]
      not_fired: [Route POD orders, Routed POD orders]
  - name: the wrong order
    order: fixtures/us.json
    expect:
      fired: [Route POD orders, Stamp, Remember moves]
""")
    (project / "rules.d" / "routing.rules").write_text(ROUTING.replace('"Move to Folder"(folder: "Print Queue")',
                                                                       '"Tag Order"(name: "POD")'), encoding="utf-8")
    result = ruledesk("test")
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "FAIL rules.d/routing_test.yaml:2::stamp only",
        '    rules.d/routing_test.yaml:5: fired_includes: "Remember moves" did not fire; fired: '
        '["Stamp", "Route POD orders"]',
        '      "Remember moves" was not evaluated: no event of this case triggers it (events: "Order is Imported", '
        '"Note Added"); it runs on "Folder is Changed"',
        '    rules.d/routing_test.yaml:6: not_fired: "Route POD orders" fired on "Order is Imported"',
        '    rules.d/routing_test.yaml:6: not_fired: there is no rule named "Routed POD orders" '
        '(did you mean "Route POD orders"?)',
        "FAIL rules.d/routing_test.yaml:7::the wrong order",
    ]
    assert "      the same rules fired, in another order" not in lines  # "Remember moves" did not fire at all
    assert lines[-1] == "0 passed, 2 failed"


def test_action_expectations_match_a_subset_of_the_rendered_parameters(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: exact actions
    order: fixtures/us.json
    expect:
      actions:
        - Set Order Metadata
        - {action: Move to Folder, params: {folder: Print Queue}}
        - {action: Add Note, params: {text: Order 1001 queued}, rule: Route POD orders}
        - {action: Set Order Metadata, params: {field: from, value: New}, status: done}
  - name: wrong actions
    order: fixtures/us.json
    expect:
      actions:
        - Set Order Metadata
        - {action: Move to Folder, params: {folder: Rush}}
      actions_include:
        - {action: Add Note}
        - {action: Move to Folder}
""")
    result = ruledesk("test")
    assert result.stdout.splitlines() == [
        "PASS rules.d/routing_test.yaml::exact actions",
        "FAIL rules.d/routing_test.yaml:10::wrong actions",
        "    rules.d/routing_test.yaml:13: actions: expected 2 actions, got 4",
        '      ok        "Set Order Metadata"(field: "stamped", value: "yes")  ["Stamp", done]',
        '      expected  "Move to Folder"(folder: "Rush")',
        '      got       "Move to Folder"(folder: "Print Queue")  ["Route POD orders", done]',
        '      got       "Add Note"(text: "Order 1001 queued")  ["Route POD orders", done]',
        '      got       "Set Order Metadata"(field: "from", value: "New")  ["Remember moves", done]',
        '    rules.d/routing_test.yaml:18: actions_include: no action after "Add Note"(text: "Order 1001 queued")  '
        '["Route POD orders", done] matches "Move to Folder"',
        "      the actions, in order:",
        '        "Set Order Metadata"(field: "stamped", value: "yes")  ["Stamp", done]',
        '        "Move to Folder"(folder: "Print Queue")  ["Route POD orders", done]',
        '        "Add Note"(text: "Order 1001 queued")  ["Route POD orders", done]',
        '        "Set Order Metadata"(field: "from", value: "New")  ["Remember moves", done]',
        "1 passed, 1 failed",
    ]
    assert result.exit_code == 1


def test_a_case_without_expectations_is_an_error_never_a_pass(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: no expect at all
    order: fixtures/us.json
  - name: an expectation that checks nothing
    order: fixtures/us.json
    expect: {fired_includes: [], not_fired: []}
""")
    result = ruledesk("test")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "ERROR rules.d/routing_test.yaml:2::no expect at all"
    assert lines[1].startswith("    rules.d/routing_test.yaml:2: the case has no expectation: add `expect:`")
    assert lines[2] == "ERROR rules.d/routing_test.yaml:4::an expectation that checks nothing"
    assert lines[3].startswith("    rules.d/routing_test.yaml:6: the case has no expectation")
    assert lines[-1] == "0 passed, 0 failed, 2 errors"


def test_a_broken_rule_file_reports_the_checkers_located_errors_not_a_traceback(project):
    write(project / "rules.d" / "routing_test.yaml", PASSING)
    write(project / "rules.d" / "typo.rules", 'rule "Typo" {\n    when "Order is Imprted"\n'
                                              '    if order.order_totl > 3\n    then "Tag Order"(name: "x")\n}\n')
    result = ruledesk("test")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "ERROR rules.d::<rules>",
        '    rules.d/typo.rules:2:10: E201: unknown event "Order is Imprted"',
        '            when "Order is Imprted"',
        "                 ^^^^^^^^^^^^^^^^^^",
        '      hint: did you mean "Order is Imported"?',
        "    rules.d/typo.rules:3:14: E205: order has no field 'order_totl'",
        "            if order.order_totl > 3",
        "                     ^^^^^^^^^^",
        "      hint: did you mean order_total?",
        "    the rules have 2 errors; no case that uses them can run",
        "ERROR rules.d/routing_test.yaml:2::US orders go to the print queue",
        "    not run: the rules have 2 errors",
        "0 passed, 0 failed, 2 errors",
    ]


def test_a_bad_case_file_is_reported_at_its_line(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: a typo in a key
    order: fixtures/us.json
    expect:
      fird: [Stamp]
  - name: a wrong type
    order: fixtures/us.json
    expect:
      fired: Stamp
  - name: a missing fixture
    order: fixtures/nowhere.json
    expect: {fired: []}
""")
    write(project / "rules.d" / "broken_test.yaml", "cases:\n  - name: x\n    order: {id: 1\n")
    result = ruledesk("test")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "ERROR rules.d/broken_test.yaml:4::<file>",
        "    rules.d/broken_test.yaml:4: invalid YAML: expected ',' or '}', but got '<stream end>'",
        "ERROR rules.d/routing_test.yaml:2::a typo in a key",
        '    rules.d/routing_test.yaml:5: case "a typo in a key": unknown case key `fird` (did you mean `fired`?); '
        "known keys: fired, fired_includes, not_fired, actions, actions_include, emitted, order, check_errors",
        "ERROR rules.d/routing_test.yaml:6::a wrong type",
        '    rules.d/routing_test.yaml:9: case "a wrong type": expect.fired: Input should be a valid list',
        "ERROR rules.d/routing_test.yaml:10::a missing fixture",
        "    rules.d/routing_test.yaml:11: order fixture not found: rules.d/fixtures/nowhere.json",
        "0 passed, 0 failed, 4 errors",
    ]


def test_no_test_cases_is_a_failure(project):
    result = ruledesk("test")
    assert result.exit_code == 1
    assert result.stdout == ("no test cases found in rules.d (test files are named *_test.yaml)\n"
                             "0 passed, 0 failed\n")


# ---- case files ------------------------------------------------------------------------------------


def test_fixtures_take_inline_overrides_at_any_depth(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: overridden
    order: fixtures/us.json
    overrides:
      order_total: "5.00"
      shipping: {city: Austin}
      order_items: {0: {quantity: 3}}
    expect:
      fired: [Stamp]
      order:
        order_total: 5
        shipping: {city: Austin, country: US, address1: 1 Main St}
        order_items: [{quantity: 3, code: TEE}]
""")
    result = ruledesk("test")
    assert result.exit_code == 0, result.stdout


def test_deep_merge():
    base = {"a": {"b": 1, "c": [1, 2]}, "items": [{"x": 1}, {"x": 2}]}
    merged = deep_merge(base, {"a": {"c": [3]}, "items": {1: {"y": 5}}, "new": None})
    assert merged == {"a": {"b": 1, "c": [3]}, "items": [{"x": 1}, {"x": 2, "y": 5}], "new": None}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "items": [{"x": 1}, {"x": 2}]}
    with pytest.raises(IndexError):
        deep_merge(base, {"items": {2: {"x": 3}}})


def test_cases_are_parametrised_over_orders_and_params(project):
    write(project / "rules.d" / "orders" / "ca.json", json.dumps({**ORDER, "id": "2002",
                                                                   "shipping": {"country": "CA"}}))
    path = write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: queued
    orders:
      - fixtures/us.json
      - orders/ca.json
      - {id: "3003", order_total: "99", shipping: {country: GB}}
    expect:
      fired_includes: [Route POD orders]
  - name: not queued
    order: fixtures/us.json
    params:
      - {id: FR, overrides: {shipping: {country: FR}}}
      - {overrides: {order_total: "1.00"}}
      - {id: cheap DE, overrides: {order_total: "1.00", shipping: {country: DE}}, expect: {fired: [Stamp]}}
    expect:
      not_fired: [Route POD orders]
""")
    cases = load_cases(str(path.relative_to(project)))
    assert [(c.name, c.line) for c in cases] == [
        ("queued[us.json]", 4), ("queued[ca.json]", 5), ("queued[order 3003]", 6),
        ("not queued[FR]", 12), ("not queued[2]", 13), ("not queued[cheap DE]", 14)]
    result = ruledesk("test")
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[-1] == "6 passed, 0 failed"


def test_case_names_must_be_unique_in_a_file(project):
    write(project / "rules.d" / "routing_test.yaml", PASSING + PASSING.removeprefix("cases:\n"))
    result = ruledesk("test")
    assert result.exit_code == 1
    assert ("    rules.d/routing_test.yaml:8: a case named 'US orders go to the print queue' is already at line 2; "
            "names must be unique in a file") in result.stdout.splitlines()


def test_check_errors_expect_the_checkers_errors_of_inline_rules(project):
    write(project / "rules.d" / "routing_test.yaml", """\
cases:
  - name: a misspelt event is E201
    rules: |
      rule "x" {
          when "Order is Imprted"
          then "Tag Order"(name: "x")
      }
    expect:
      check_errors:
        - {code: E201, at: "2:10", message_contains: Imprted}
  - name: the wrong code
    rules: |
      rule "x" {
          when "Order is Imported"
          if order.order_totl > 3
          then "Tag Order"(name: "x")
      }
    expect:
      check_errors: [E201]
  - name: rules without errors
    rules: |
      rule "x" {
          when "Order is Imported"
          then "Tag Order"(name: "x")
      }
    expect:
      check_errors: [E201]
""")
    result = ruledesk("test", "-k", "e")
    assert result.stdout.splitlines() == [
        "PASS rules.d/routing_test.yaml::a misspelt event is E201",
        "FAIL rules.d/routing_test.yaml:11::the wrong code",
        "    rules.d/routing_test.yaml:19: check_errors: expected 1 error, got 1",
        "      missing     E201",
        "      unexpected  inline.rules:3:14: E205: order has no field 'order_totl'",
        "      the checker reported:",
        "        inline.rules:3:14: E205: order has no field 'order_totl'",
        "                if order.order_totl > 3",
        "                         ^^^^^^^^^^",
        "          hint: did you mean order_total?",
        "FAIL rules.d/routing_test.yaml:20::rules without errors",
        "    rules.d/routing_test.yaml:27: check_errors: expected E201; the rules have no errors",
        "1 passed, 2 failed",
    ]


def test_now_fixes_the_clock_of_the_case(project):
    write(project / "rules.d" / "routing_test.yaml", """\
now: "2026-11-23 12:00:00"
cases:
  - name: file clock
    order: fixtures/us.json
    expect: {order: {order_metadata: {stamped: "yes"}}}
  - name: case clock
    now: "2027-01-01"
    order: fixtures/us.json
    expect: {fired_includes: [Stamp]}
""")
    run = run_tests(["rules.d"])
    assert [r.status for r in run.results] == ["passed", "passed"]


def test_cases_press_buttons_and_run_schedules(project):
    (project / "rules.d" / "manual.rules").write_text("""\
rule "Requeue" {
    when button "Requeue"
    if order.folder != "Print Queue"
    then "Move to Folder"(folder: "Print Queue")
}

rule "Nudge" {
    when every 1d in folder "Print Queue"
    if order.date_updated < now() - 3d
    then "Tag Order"(name: "Late")
}
""", encoding="utf-8")
    write(project / "rules.d" / "manual_test.yaml", """\
now: "2026-11-23 12:00:00"
cases:
  - name: requeue
    button: requeue
    order: {id: "1", folder: Needs Review}
    expect: {fired: [Requeue, Remember moves], order: {folder: Print Queue}}
  - name: nudge
    schedule: Nudge
    order: {id: "1", folder: Print Queue, date_updated: "2026-11-01 10:00:00"}
    expect: {fired: [Nudge]}
  - name: expects a button rule from an event
    order: {id: "1"}
    expect: {fired_includes: [Requeue]}
  - name: both
    event: Order is Imported
    button: Requeue
    order: {id: "1"}
    expect: {fired: []}
  - name: no such button
    button: Requeu
    order: {id: "1"}
    expect: {fired: []}
""")
    result = ruledesk("test", "rules.d/manual_test.yaml")
    assert result.stdout.splitlines() == [
        "PASS rules.d/manual_test.yaml::requeue",
        "PASS rules.d/manual_test.yaml::nudge",
        "FAIL rules.d/manual_test.yaml:11::expects a button rule from an event",
        '    rules.d/manual_test.yaml:13: fired_includes: "Requeue" did not fire; fired: ["Stamp"]',
        '      "Requeue" was not evaluated: no event of this case triggers it (events: "Order is Imported"); '
        'it runs from the button "Requeue" (a case presses it with `button: "Requeue"`)',
        "ERROR rules.d/manual_test.yaml:14::both",
        '    rules.d/manual_test.yaml:14: case "both": give one of event, button or schedule, not event and button',
        "ERROR rules.d/manual_test.yaml:19::no such button",
        "    rules.d/manual_test.yaml:20: no enabled rule has button 'Requeu' (did you mean 'Requeue'?)",
        "2 passed, 1 failed, 2 errors",
    ]


# ---- selection and formats ---------------------------------------------------------------------


TWO_FILES = {
    "rules.d/routing_test.yaml": PASSING + """\
  - name: broken on purpose
    order: fixtures/us.json
    expect: {fired: [Stamp]}
""",
    "tests/more_test.yaml": """\
cases:
  - name: stamp is first
    order: ../rules.d/fixtures/us.json
    expect: {fired_includes: [Stamp]}
  - name: no expectation
    order: {id: "1"}
""",
}


@pytest.fixture
def two_files(project):
    for name, text in TWO_FILES.items():
        write(project / name, text)
    return project


def test_k_selects_cases_by_file_and_name(two_files):
    result = ruledesk("test", "rules.d", "tests", "-k", "STAMP")
    assert result.stdout.splitlines() == ["PASS tests/more_test.yaml::stamp is first", "1 passed, 0 failed"]
    assert result.exit_code == 0
    result = ruledesk("test", "rules.d", "tests", "-k", "more_test")
    assert result.stdout.splitlines()[-1] == "1 passed, 0 failed, 1 error"
    result = ruledesk("test", "-k", "nothing like it")
    assert result.stdout.splitlines() == ["no test case matches -k 'nothing like it'", "0 passed, 0 failed"]
    assert result.exit_code == 1


def test_junit_xml_parses_and_counts(two_files):
    result = ruledesk("test", "rules.d", "tests", "--format", "junit")
    assert result.exit_code == 1
    root = ET.fromstring(result.stdout)
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == ("testsuites", "4", "1", "1")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert sorted(suites) == ["rules.d/routing_test.yaml", "tests/more_test.yaml"]
    assert (suites["rules.d/routing_test.yaml"].get("tests"), suites["rules.d/routing_test.yaml"].get("failures")) \
        == ("2", "1")
    failure = root.find(".//testcase[@name='broken on purpose']/failure")
    assert failure is not None and failure.get("message").startswith("rules.d/routing_test.yaml:10: fired: expected")
    error = root.find(".//testcase[@name='no expectation']/error")
    assert error is not None and "has no expectation" in error.text
    assert root.find(".//testcase[@name='stamp is first']").get("line") == "2"
    assert result.stderr.strip().splitlines()[-1] == "2 passed, 1 failed, 1 error"


def test_json_output(two_files):
    result = ruledesk("test", "rules.d", "tests", "--format", "json", "--coverage")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["summary"] == {"passed": 2, "failed": 1, "errors": 1, "text": "2 passed, 1 failed, 1 error"}
    assert [(c["name"], c["status"]) for c in report["cases"]] == [
        ("US orders go to the print queue", "passed"), ("broken on purpose", "failed"),
        ("stamp is first", "passed"), ("no expectation", "error")]
    assert report["cases"][1]["messages"][0] == ('rules.d/routing_test.yaml:10: fired: expected ["Stamp"], '
                                                 'got ["Stamp", "Route POD orders", "Remember moves"]')
    assert report["coverage"]["rules"] == {"total": 3, "fired": 3, "percent": 100.0}


# ---- coverage from the command line -------------------------------------------------------------


def test_fail_under_fails_a_passing_run_with_too_little_coverage(project):
    write(project / "rules.d" / "routing_test.yaml", PASSING)
    result = ruledesk("test", "--fail-under", "90")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[-2:] == ["coverage 71.4% is under --fail-under 90%", "1 passed, 0 failed"]
    assert "  rules.d/routing.rules:10:8  order.shipping.country in pod_countries  never false  " \
           '(rule "Route POD orders")' in lines
    assert ruledesk("test", "--fail-under", "71.4").exit_code == 0
    result = ruledesk("test", "--coverage", "--coverage-format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
    assert report["total"] == {"items": 7, "covered": 5, "percent": 71.4}


def test_the_example_rules_pass_their_tests_with_full_coverage(monkeypatch):
    """The README's test command (pytest) runs exactly this: `ruledesk test --coverage --fail-under 100`."""
    monkeypatch.chdir(ROOT)
    result = ruledesk("test", "--coverage", "--fail-under", "100")
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("FAIL", "ERROR"))]
    assert "coverage: rules 100.0%, clause outcomes 100.0%, total 100.0%" in lines
    assert lines[-1].endswith(" passed, 0 failed")


# ---- --now and watch ---------------------------------------------------------------------------


def test_a_bad_now_is_a_usage_error(project):
    result = ruledesk("test", "--now", "yesterday")
    assert result.exit_code == 2
    assert "not a date and time: 'yesterday'" in result.stderr


def test_the_debouncer_runs_once_per_burst():
    ticks = iter([0.0, 0.1, 0.2, 0.2, 0.55])
    debouncer = Debouncer(0.3, clock=lambda: next(ticks))
    assert not debouncer.wait(timeout=0)
    for _ in range(3):
        debouncer.trigger()  # at 0.0, 0.1, 0.2
    assert debouncer.wait(timeout=0)  # quiet 0.0 at 0.2, then 0.35 at 0.55: one run for the burst
    assert not debouncer.wait(timeout=0)


def test_watch_reruns_after_a_change_and_stops(tmp_path: Path):
    rules = write(tmp_path / "rules.d" / "a.rules", ROUTING)
    runs: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=([str(rules.parent)], lambda: runs.append(time.monotonic())),
                              kwargs={"delay": 0.3, "stop": stop, "poll": 0.05}, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: len(runs) == 1)
        time.sleep(0.2)  # let the observer settle before the change
        for _ in range(3):
            rules.write_text(ROUTING + "\n", encoding="utf-8")
        write(tmp_path / "rules.d" / "notes.txt", "ignored")
        _wait_for(lambda: len(runs) >= 2)
        time.sleep(0.6)
        assert len(runs) == 2  # three writes, one re-run; the .txt file is not watched
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---- explain and run --explain -------------------------------------------------------------------


def test_explain_prints_every_decision_of_the_cascade(project):
    write(project / "order.json", json.dumps({**ORDER, "shipping": {"country": "FR", "address1": "x"}}))
    result = ruledesk("explain", "--rules", "rules.d", "--now", "2026-11-23 12:00:00", "order.json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Order is Imported (order 1001)",
        "  ✓  Stamp  fired",
        "  ✗  Route POD orders  did not fire",
        '       rules.d/routing.rules:10:8  order.shipping.country in pod_countries  ->  '
        '"FR" in ["US", "CA", "GB"]  ->  false',
    ]
    result = ruledesk("explain", "--rules", "rules.d", "--event", "Folder is Changed", "--payload",
                      '{"from_folder": "New", "to_folder": "Rush"}', "order.json")
    assert result.stdout.splitlines() == ["Folder is Changed (order 1001)", "  ✓  Remember moves  fired"]


def test_explain_reports_bad_input_with_exit_2(project):
    assert ruledesk("explain", "--rules", "rules.d", "missing.json").exit_code == 2
    write(project / "bad.json", "{")
    result = ruledesk("explain", "--rules", "rules.d", "bad.json")
    assert (result.exit_code, result.stderr.strip()) == (2, "error: invalid JSON: Expecting property name enclosed "
                                                             "in double quotes at line 1 column 2")
    write(project / "order.json", json.dumps(ORDER))
    result = ruledesk("explain", "--rules", "rules.d", "--event", "Order is Imprted", "order.json")
    assert result.exit_code == 2
    assert "unknown event 'Order is Imprted'" in result.stderr


def test_run_explain_adds_the_why_to_json_and_table(project):
    line = json.dumps({**ORDER, "order_total": "3.00"}) + "\n"
    result = ruledesk("run", "--rules", "rules.d", "--dry-run", "--format", "json", "--explain", "-", input=line)
    decision = json.loads(result.stdout.splitlines()[0])
    assert decision["explain"] == [
        {"rule": "Stamp", "fired": True},
        {"rule": "Route POD orders", "fired": False, "at": "rules.d/routing.rules:11:12",
         "clause": "order.order_total > 20", "compared": "3.00 > 20"},
    ]
    result = ruledesk("run", "--rules", "rules.d", "--dry-run", "--format", "table", "--explain", "-", input=line)
    assert result.exit_code == 0
    tail = result.stdout.splitlines()[-4:]
    assert tail == ["Order is Imported (order 1001)", "  ✓  Stamp  fired", "  ✗  Route POD orders  did not fire",
                    "       rules.d/routing.rules:11:12  order.order_total > 20  ->  3.00 > 20  ->  false"]
