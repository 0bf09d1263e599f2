"""bench/decisions.py on a tiny size: it runs, checks the lines, and reports every number (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import decisions as D  # noqa: E402
from bench import workload as W  # noqa: E402
from ruledesk.engine import Engine  # noqa: E402


def test_the_decisions_benchmark_reports_its_numbers() -> None:
    engine = Engine.from_source(W.rules_text(W.make_rule_specs(40, seed=2)), "bench.rules")
    decisions = D.workload_decisions(engine, 20) + [D.big_order_decision(engine, 50)]
    D.check(decisions)
    cfg = {"min_rep_s": 0.0, "repeat": 1}
    result = D.measure(decisions, cfg)
    for key in ("json_dumps_us", "line_us", "line_cold_us", "old_path_us", "ratio", "ratio_cold"):
        assert result[key] >= 0
    table = D.table({"rules": 40, "target_ratio": D.TARGET_RATIO, "workload": result, "order_50_items": result})
    assert "order 50 items" in table and "target: decision_line at most 1.5x" in table
