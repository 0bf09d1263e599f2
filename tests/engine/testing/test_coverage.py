"""Coverage (engine/testing/coverage.py) on rulesets whose answer is known by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruledesk.engine.testing.coverage import measure, percent
from ruledesk.engine.testing.runner import run_tests

# Four counted rules: A and B (events), C (a button), D (a schedule); F is disabled, so not counted.
# A's condition is `a and (b or c)`; the cases see a true and false, b only true, and never evaluate c.
# The cases fire A, B and C; no case runs D's schedule.
KNOWN = """\
rule "A" {
    when "Order is Imported"
    if order.shipping.country == "US"
       and (order.order_total > 100 or order.email ends with "@vip.example")
    then "Tag Order"(name: "A")
}

rule "B" {
    when "Order is Imported"
    then "Set Order Metadata"(field: "b", value: "yes")
}

rule "C" {
    when button "Mark ready"
    if order.folder == "Review"
    then "Set Order Metadata"(field: "c", value: "yes")
}

rule "D" {
    when every 1d in folder "Review"
    then "Set Order Metadata"(field: "d", value: "yes")
}

rule "F" disabled {
    when "Order is Imported"
    if order.email is set
    then "Tag Order"(name: "F")
}
"""

KNOWN_CASES = """\
cases:
  - name: a US order over 100
    order: {id: "1", shipping: {country: US}, order_total: "150"}
    expect: {fired: [A, B]}
  - name: a Canadian order
    order: {id: "2", shipping: {country: CA}, order_total: "150"}
    expect: {fired: [B]}
  - name: ready
    button: Mark ready
    order: {id: "3", folder: Review}
    expect: {fired: [C]}
"""

# A let predicate used by two rules: its clauses count once, under the let.
WITH_LET = """\
let printable(i) = i.metadata.podos_variant_id is set or i.metadata.podos_gfn_product_id is set

let big = order.order_total > 100

rule "All printable" {
    when "Order is Imported"
    if all i in order.order_items where printable(i)
    then "Tag Order"(name: "print")
}

rule "Big and printable" {
    when "Order is Imported"
    if big and any i in order.order_items where printable(i)
    then "Tag Order"(name: "big")
}
"""

WITH_LET_CASES = """\
cases:
  - name: one printable item
    order: {id: "1", order_total: "10", order_items: [{id: "1", metadata: {podos_variant_id: "pv-1"}}]}
    expect: {fired: [All printable]}
"""


def coverage_of(tmp_path: Path, rules: str, cases: str):
    (tmp_path / "r.rules").write_text(rules, encoding="utf-8")
    (tmp_path / "r_test.yaml").write_text(cases, encoding="utf-8")
    run = run_tests([str(tmp_path)])
    assert [r.status for r in run.results] == ["passed"] * len(run.results), [r.messages for r in run.results]
    return measure(run.ruleset, run.decisions())


def test_a_ruleset_with_a_known_answer(tmp_path: Path):
    report = coverage_of(tmp_path, KNOWN, KNOWN_CASES).to_json()
    file = str(tmp_path / "r.rules")
    assert report["rules"] == {"total": 4, "fired": 3, "percent": 75.0}
    # clauses a, b, c of A and the one of C: 8 outcomes, of which a:true, a:false, b:true, C's:true
    assert report["clauses"] == {"total": 4, "outcomes": 8, "covered": 4, "percent": 50.0}
    assert report["total"] == {"items": 12, "covered": 7, "percent": 58.3}
    assert report["not_fired"] == [{"rule": "D", "at": f"{file}:19:6"}]
    assert report["uncovered_clauses"] == [
        {"at": f"{file}:4:13", "clause": "order.order_total > 100", "owner": 'rule "A"',
         "seen_true": True, "seen_false": False, "missing": "never false"},
        {"at": f"{file}:4:40", "clause": 'order.email ends with "@vip.example"', "owner": 'rule "A"',
         "seen_true": False, "seen_false": False, "missing": "never evaluated"},
        {"at": f"{file}:15:8", "clause": 'order.folder == "Review"', "owner": 'rule "C"',
         "seen_true": True, "seen_false": False, "missing": "never false"},
    ]
    assert report["excluded"] == [{"rule": "F", "at": f"{file}:24:6", "reason": "disabled"}]
    assert report["files"] == [{"file": file, "rules": 4, "fired": 3, "outcomes": 8, "covered": 4, "percent": 58.3}]


def test_the_terminal_table(tmp_path: Path):
    text = coverage_of(tmp_path, KNOWN, KNOWN_CASES).format()
    file = str(tmp_path / "r.rules")
    width = len(file)
    assert text.splitlines() == [
        "coverage: rules 75.0%, clause outcomes 50.0%, total 58.3%",
        "file".ljust(width) + "  rules fired  clause outcomes  cover",
        "-" * width + "  -----------  ---------------  -----",
        file + "          3/4              4/8  58.3%",
        "-" * width + "  -----------  ---------------  -----",
        "total".ljust(width) + "          3/4              4/8  58.3%",
        "rules no case fired:",
        f'  {file}:19:6  "D"',
        "clauses not covered:",
        f'  {file}:4:13  order.order_total > 100  never false  (rule "A")',
        f'  {file}:4:40  order.email ends with "@vip.example"  never evaluated  (rule "A")',
        f'  {file}:15:8  order.folder == "Review"  never false  (rule "C")',
        'not counted (disabled): "F"',
    ]


def test_let_clauses_count_once_under_the_let(tmp_path: Path):
    report = coverage_of(tmp_path, WITH_LET, WITH_LET_CASES)
    file = str(tmp_path / "r.rules")
    assert [(c.text, c.owner, c.missing) for c in report.clauses] == [
        ("all i in order.order_items where printable(i)", 'rule "All printable"', "never false"),
        ("printable(i)", 'rule "All printable"', "never false"),
        ("big", 'rule "Big and printable"', "never true"),
        ("any i in order.order_items where printable(i)", 'rule "Big and printable"', "never evaluated"),
        ("printable(i)", 'rule "Big and printable"', "never evaluated"),
        ("i.metadata.podos_variant_id is set", "let printable", "never false"),
        ("i.metadata.podos_gfn_product_id is set", "let printable", "never evaluated"),
        ("order.order_total > 100", "let big", "never true"),
    ]
    assert [str(c.loc) for c in report.lets[0].clauses] == [f"{file}:1:20", f"{file}:1:58"]
    assert (report.rules_fired, len(report.rules), report.outcomes_covered, report.outcomes_total) == (1, 2, 5, 16)


def test_percentages_round_down_and_fail_under_is_exact():
    assert percent(2, 3) == 66.6
    assert percent(999, 1000) == 99.9
    assert percent(9999, 10000) == 99.9  # never shows 100.0 unless everything is covered
    assert percent(0, 0) == 100.0


@pytest.mark.parametrize("minimum, met", [(58.3, True), (58.33, True), (58.34, False), (100, False), (0, True)])
def test_fail_under_compares_the_exact_total(tmp_path: Path, minimum: float, met: bool):
    assert coverage_of(tmp_path, KNOWN, KNOWN_CASES).meets(minimum) is met
