"""What writing a decision as a JSON line costs (issue 7): ``decision_line`` (orjson straight from the
runtime values) against ``json.dumps`` of the same decision already dumped to JSON-able data.

    python bench/decisions.py [--quick] [--json PATH]

Two sets of decisions: those of the bench workload (bench/workload.py) at 1,000 rules, processed
with ``dry_run=True``, and a decision on one 50-item order.  For each, per decision:

  json_dumps_us   ``json.dumps`` (compact, ensure_ascii=False, as ``to_json(dumped=True)``) of
                  ``decision.to_json()`` computed beforehand: the floor of the json path;
  line_us         ``decision_line(decision)``: everything, from the decision to the text, with the
                  caches of dumped Decimals and datetimes as a run leaves them;
  line_cold_us    the same with those caches emptied before every decision (the worst case:
                  every value of the order dumped afresh);
  old_path_us     what ``ruledesk run`` did before: ``to_json(decision.to_json(), dumped=True)``,
                  which walks the order with ``dump_value`` and then calls ``json.dumps``
                  (the engine no longer dumps the order into each decision, so the walk is here);
  ratio           line_us / json_dumps_us, and ratio_cold: line_cold_us / json_dumps_us
                  (the target: both at most 1.5).

Repetitions of the three are interleaved in one process, each timed with the cyclic GC paused, and
the best of N kept (a shared machine: only the ratios within one run mean anything).  Before
anything is timed, every line must parse to the same data as ``decision.to_json()``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import _loops_for, _timed  # noqa: E402
from bench.workload import make_events, make_orders, make_rule_specs, rules_text  # noqa: E402
from ruledesk.engine.model.order import _DUMPED_DATETIMES, _DUMPED_DECIMALS, to_json  # noqa: E402
from ruledesk.engine.run.decision import Decision, decision_line  # noqa: E402
from ruledesk.engine.run.engine import Engine  # noqa: E402

TARGET_RATIO = 1.5
FULL = {"rules": 1000, "events": 1000, "items": 50, "min_rep_s": 0.1, "repeat": 7}
QUICK = {"rules": 1000, "events": 200, "items": 50, "min_rep_s": 0.02, "repeat": 3}


def workload_decisions(engine: Engine, events: int) -> list[Decision]:
    decisions: list[Decision] = []
    for raw in make_events(events):
        decisions.extend(engine.process(raw, dry_run=True).decisions)
    return decisions


def big_order_decision(engine: Engine, items: int) -> Decision:
    """A decision on an order of ``items`` items (every item of the workload's orders, pooled)."""
    orders = make_orders(max(4, items // 2))
    order = dict(orders[0])
    order["order_items"] = [item for o in orders for item in o["order_items"]][:items]
    assert len(order["order_items"]) == items, "not enough items in the workload's orders"
    return engine.process({"event": "Order is Imported", "order": order, "store": "Main Store"},
                          dry_run=True).decisions[0]


def check(decisions: list[Decision]) -> None:
    for decision in decisions:
        if json.loads(decision_line(decision)) != json.loads(json.dumps(decision.to_json())):
            raise SystemExit(f"BENCHMARK ABORTED: the JSON line of a {decision.event!r} decision differs")


def forget() -> None:
    """Empty the caches of dumped Decimals and datetimes ``decision_line`` keeps."""
    _DUMPED_DECIMALS.clear()
    _DUMPED_DATETIMES.clear()


def measure(decisions: list[Decision], cfg: dict[str, Any]) -> dict[str, Any]:
    dumped = [decision.to_json() for decision in decisions]
    dumps = json.dumps

    def loop_json(loops: int) -> None:
        for _ in range(loops):
            for data in dumped:
                dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def loop_line(loops: int) -> None:
        for _ in range(loops):
            for decision in decisions:
                decision_line(decision)

    def loop_cold(loops: int) -> None:
        for _ in range(loops):
            for decision in decisions:
                forget()
                decision_line(decision)

    def loop_old(loops: int) -> None:
        for _ in range(loops):
            for decision in decisions:
                to_json(decision.to_json(), dumped=True)

    def loop_forget(loops: int) -> None:  # what loop_cold spends clearing the caches, taken off it
        for _ in range(loops):
            for _decision in decisions:
                forget()

    loops_fns = {"json_dumps": loop_json, "line": loop_line, "line_cold": loop_cold, "forget": loop_forget,
                 "old_path": loop_old}
    for loop in loops_fns.values():
        loop(1)  # warm-up
    loops = {name: _loops_for(loop, cfg["min_rep_s"]) for name, loop in loops_fns.items()}
    times: dict[str, list[float]] = {name: [] for name in loops_fns}
    for _ in range(cfg["repeat"]):
        for name, loop in loops_fns.items():
            times[name].append(_timed(loop, loops[name]) / (loops[name] * len(decisions)))
    best = {name: min(values) * 1e6 for name, values in times.items()}
    cold = max(best["line_cold"] - best["forget"], 0.0)
    return {"decisions": len(decisions), "json_dumps_us": best["json_dumps"], "line_us": best["line"],
            "line_cold_us": cold, "old_path_us": best["old_path"], "ratio": best["line"] / best["json_dumps"],
            "ratio_cold": cold / best["json_dumps"],
            "old_over_line": best["old_path"] / best["line"],
            "reps_us": {name: [t * 1e6 for t in values] for name, values in times.items()}}


def measure_decisions(quick: bool) -> dict[str, Any]:
    """Raw numbers (microseconds per decision) for the workload's decisions and a 50-item order's."""
    cfg = QUICK if quick else FULL
    engine = Engine.from_source(rules_text(make_rule_specs(cfg["rules"])), "bench.rules")
    workload = workload_decisions(engine, cfg["events"])
    big = [big_order_decision(engine, cfg["items"])]
    check(workload + big)
    return {"rules": cfg["rules"], "target_ratio": TARGET_RATIO,
            "workload": measure(workload, cfg), f"order_{cfg['items']}_items": measure(big, cfg)}


def table(results: dict[str, Any]) -> str:
    lines = ["| decisions | n | json.dumps of dumped data (µs) | decision_line (µs) | ratio | "
             "decision_line, caches cold (µs) | ratio | old path: dump + json.dumps (µs) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("workload", f"bench workload, {results['rules']} rules"),
                       *((k, k.replace("_", " ")) for k in results if k.startswith("order_"))):
        r = results[key]
        lines.append(f"| {label} | {r['decisions']} | {r['json_dumps_us']:.1f} | {r['line_us']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['line_cold_us']:.1f} | {r['ratio_cold']:.2f}x | {r['old_path_us']:.1f} |")
    worst = max(max(results[k]["ratio"], results[k]["ratio_cold"])
                for k in results if k == "workload" or k.startswith("order_"))
    verdict = "PASS" if worst <= results["target_ratio"] else "FAIL"
    lines.append("")
    lines.append(f"target: decision_line at most {results['target_ratio']}x json.dumps: {verdict} "
                 f"(worst {worst:.2f}x)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    args = parser.parse_args(argv)
    results = measure_decisions(args.quick)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
