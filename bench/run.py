"""ruledesk benchmark: one command, one table.

    python bench/run.py [--quick] [--json PATH] [--seed N]

Measures, side by side, for rulesets of 10, 100, 1,000 and 10,000 generated rules (bench/workload.py;
10,000 only in the full run):

  (a) ruledesk's compiled conditions through the embedding API, matching only:
      ``engine.match(event, validated=True)`` over pre-validated events;
  (p) a plain generated function per event (fields read once, conditions inlined as written);
  (b) the same conditions as hand-written Python lambdas dispatched by event name;
  the event path: ``Engine.process`` with each explanation level, ``match`` vs ``match_why``, and
      from JSON text (``Engine.event_json`` + ``process``) against ``json.loads`` + (b);
  (c) ``ruledesk run --dry-run --format json ORDERS.jsonl > /dev/null`` end to end, as a subprocess,
      with its start-up (a run over an empty file) reported separately;

then order validation against ``json.loads`` (bench/validation.py), a decision as a JSON line
against ``json.dumps`` (bench/decisions.py), and the build cost: parse+check+compile of 1,000 and
10,000 rules, each in a fresh subprocess (bench/build_one.py), wall time and peak RSS, then
``Ruleset.warm()`` (what a daemon pays off the hot path to compile everything that is otherwise
compiled on first use).

Before anything is timed, (a), (p) and (b) must return identical rule-name lists for a sample of
500 events (and the CLI's ``fired`` lists must equal ``engine.match``); if not, the run aborts.

Prints markdown tables (paste them into bench/README.md) and the targets with PASS/FAIL.
``--json PATH`` writes every raw number. Exit status: 0, also when a target fails (a benchmark
reports; it does not gate); 1 when a correctness check fails; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import (  # noqa: E402
    EquivalenceError, check_equivalence, make_dispatch, make_events, make_plain, make_rule_specs, python_rules,
    rules_text,
)

BUILD_COUNTS = (1000, 10000)
TARGET_SPEEDUP = 3.0          # (a) at least 3x faster than (b) at 1000 rules
TARGET_SPEEDUP_PLAIN = 1.3    # ... and at least 1.3x faster than (p)
TARGET_TEXT_X = 2.0           # process() from JSON text at most 2x json.loads + the lambdas, at 1000 rules
TARGET_VALIDATE_X = 1.5       # validating an order from text at most 1.5x json.loads of it
TARGET_DECISION_X = 1.5       # a decision as a JSON line at most 1.5x json.dumps of the same data
TARGET_BUILD_1K_S = 1.0       # parse+check+compile of 1,000 rules
TARGET_BUILD_10K_S = 10.0     # ... of 10,000 rules
TARGET_BUILD_10K_MB = 500.0   # ... peak RSS
TARGET_EXPLAIN_PCT = 10.0     # the default deciding-clause record, as a share of process()

FULL = {"match_events": 2000, "min_rep_s": 0.2, "repeat": 5, "run_events": 5000, "run_repeat": 3,
        "process_events": 1000, "rule_counts": (10, 100, 1000, 10000), "cli_counts": (10, 100, 1000, 10000),
        "build_repeat": {1000: 3, 10000: 2}}
QUICK = {"match_events": 500, "min_rep_s": 0.04, "repeat": 3, "run_events": 1000, "run_repeat": 1,
         "process_events": 300, "rule_counts": (10, 100, 1000), "cli_counts": (10, 1000),
         "build_repeat": {1000: 1}}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"\nBENCHMARK ABORTED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---- timing ------------------------------------------------------------------------------------


def _timed(loop, loops: int) -> float:
    """Seconds for ``loop(loops)`` with the cyclic GC paused (like timeit), after a collection."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        loop(loops)
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def _loops_for(loop, min_rep_s: float) -> int:
    """How many passes over the events make one repetition last at least ``min_rep_s`` (timeit-style)."""
    loops = 1
    while True:
        took = _timed(loop, loops)
        if took >= min_rep_s:
            return loops
        loops = max(loops * 2, int(loops * min_rep_s / max(took, 1e-9) * 1.1) + 1)


def _interleaved(loops: dict[str, Any], cfg: dict[str, Any], per: int) -> dict[str, float]:
    """Best µs per item of each loop, repetitions interleaved so drift hits every loop alike."""
    counts = {}
    for name, fn in loops.items():
        fn(1)  # warm-up: lazily compiled code, caches
        counts[name] = _loops_for(fn, cfg["min_rep_s"])
    best: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(cfg["repeat"]):
        for name, fn in loops.items():
            best[name].append(_timed(fn, counts[name]) / (counts[name] * per))
    return {name: min(values) * 1e6 for name, values in best.items()}


def measure_matching(engine, table, plain, events, cfg) -> dict[str, Any]:
    """(a) ``Engine.match`` over pre-validated events, (p) the plain generated function per event
    and (b) the hand-written lambdas, over the same events, repetitions interleaved; best time wins."""
    match = engine.match
    dispatch = make_dispatch(table)

    def loop_a(loops: int) -> None:
        for _ in range(loops):
            for event in events:
                match(event, validated=True)

    def loop_p(loops: int) -> None:
        for _ in range(loops):
            for event in events:
                plain(event)

    def loop_b(loops: int) -> None:
        for _ in range(loops):
            for event in events:
                dispatch(event)

    us = _interleaved({"a": loop_a, "p": loop_p, "b": loop_b}, cfg, len(events))
    a, p, b = us["a"], us["p"], us["b"]
    return {"a_us": a, "p_us": p, "b_us": b, "a_events_s": 1e6 / a, "speedup": b / a, "speedup_plain": p / a,
            "events": len(events)}


def measure_process(engine, table, events, lines, cfg) -> dict[str, Any]:
    """The event path.  ``Engine.process`` (dry run, decisions built, nothing printed) of pre-validated
    events with explain off, with the default deciding clause and with the full trace; the event's
    ``match`` vs ``match_why``; and the whole path from JSON text (parse, validate, process with
    deciding clauses) against ``json.loads`` of the same text plus the hand-written lambdas."""
    process = engine.process
    dispatch = make_dispatch(table)
    event_json = engine.event_json

    def processing(level: str):
        def loop(loops: int) -> None:
            for _ in range(loops):
                for event in events:
                    process(event, dry_run=True, explain=level, validated=True)
        return loop

    def matching(kind: str):
        plans = [(engine.ruleset.plan(e.name), e.order, {"name": e.name, **e.payload}, e.store.view()) for e in events]
        plans = [p for p in plans if p[0] is not None]

        def loop(loops: int) -> None:
            for _ in range(loops):
                for plan, order, event_ns, store in plans:
                    getattr(plan, kind)(order, event_ns, store, None)
        return loop

    def from_text(loops: int) -> None:  # what `ruledesk run` does with a line
        for _ in range(loops):
            for line in lines:
                process(event_json(line), dry_run=True, explain="deciding", validated=True)

    def loads(loops: int) -> None:
        for _ in range(loops):
            for line in lines:
                json.loads(line)

    def lambdas(loops: int) -> None:
        for _ in range(loops):
            for event in events:
                dispatch(event)

    us = _interleaved({"off": processing("off"), "deciding": processing("deciding"), "full": processing("full"),
                       "match": matching("match"), "match_why": matching("match_why"), "text": from_text,
                       "loads": loads, "lambdas": lambdas}, cfg, len(events))
    reference = us["loads"] + us["lambdas"]
    return {
        "process_off_us": us["off"], "process_deciding_us": us["deciding"], "process_full_us": us["full"],
        "deciding_cost_pct": (us["deciding"] / us["off"] - 1) * 100, "full_cost_x": us["full"] / us["off"],
        "match_us": us["match"], "match_why_us": us["match_why"],
        "match_why_cost_pct": (us["match_why"] / us["match"] - 1) * 100,
        "process_text_us": us["text"], "json_loads_us": us["loads"], "lambdas_us": us["lambdas"],
        "reference_us": reference, "text_vs_reference_x": us["text"] / reference,
    }


def measure_order_validation(quick: bool) -> dict[str, Any]:
    """bench/validation.py: an order validated from JSON text and from a dict against json.loads."""
    from bench.validation import measure_validation, report

    raw = measure_validation(quick)
    table = report(raw).split("\n\n- ")[0].rstrip()
    limits = {True: TARGET_VALIDATE_X, False: 1.0}
    targets = [{"name": f"{t['workload']}: {t['what']}", "value": t["value"],
                "limit": limits["json.loads" in t["what"]], "shown": f"{t['value']:.2f}x"} for t in raw["targets"]]
    return {"raw": raw, "table": "Validating an order (µs per order, and as a multiple of `json.loads` of the same "
                                  "text):\n\n" + table, "targets": targets}


def measure_decision_lines(quick: bool) -> dict[str, Any]:
    """bench/decisions.py: a decision written as a JSON line against json.dumps of the same data."""
    from bench.decisions import measure_decisions, table

    raw = measure_decisions(quick)
    cases = [key for key in raw if key == "workload" or key.startswith("order_")]
    worst = max(max(raw[key]["ratio"], raw[key]["ratio_cold"]) for key in cases)
    return {"raw": raw, "table": "A decision as a JSON line (`decision_line`) against `json.dumps` of the same "
                                  "data, already JSON-able:\n\n" + table(raw).rsplit("\n\n", 1)[0],
            "targets": [{"name": f"a decision as a JSON line <= {TARGET_DECISION_X:g}x json.dumps of the same data "
                                 "(worst case, caches cold included)", "value": worst, "limit": TARGET_DECISION_X,
                         "shown": f"{worst:.2f}x"}]}


def check_plain(engine, plain, events) -> None:
    for event in events:
        got, want = engine.match(event, validated=True), plain(event)
        if got != want:
            raise EquivalenceError(f"{event.name!r} order {event.order.get('id')}: ruledesk {got} != plain {want}")


# ---- (c): the CLI end to end -------------------------------------------------------------------


def cli_command() -> list[str]:
    """The ``ruledesk`` console script of this interpreter's environment, else on PATH, else ``-m``."""
    beside = Path(sys.executable).parent / "ruledesk"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("ruledesk")
    if found:
        return [found]
    return [sys.executable, "-m", "ruledesk.engine.cli"]


def _run_cli(rules: Path, orders: Path, capture: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    command = cli_command() + ["run", "--rules", str(rules), "--dry-run", "--format", "json", str(orders)]
    start = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return seconds, done


def check_cli(engine, rules: Path, raw_events: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """The CLI's ``fired`` lists must equal ``engine.match`` (the generated actions change no field a
    condition reads, so firing earlier rules cannot change later conditions)."""
    sample = raw_events[:200]
    path = workdir / "cli-check.jsonl"
    _write_jsonl(path, sample)
    _, done = _run_cli(rules, path, capture=True)
    decisions = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    top = [d for d in decisions if d.get("depth", 0) == 0]
    if len(top) != len(sample):
        fail(f"`ruledesk run` wrote {len(top)} top-level decisions for {len(sample)} input events")
    for raw, decision in zip(sample, top):
        want = engine.match(engine.event(raw), validated=True)
        if decision.get("fired") != want:
            fail(f"`ruledesk run` fired {decision.get('fired')} for order {raw['order']['id']} "
                 f"({raw['event']!r}) but engine.match says {want}")
    return {"checked": len(sample)}


def measure_cli(rules: Path, orders: Path, empty: Path, events: int, repeat: int) -> dict[str, Any]:
    _run_cli(rules, empty)  # warm-up: file cache, .pyc files
    startups = [_run_cli(rules, empty)[0] for _ in range(repeat)]
    runs = [_run_cli(rules, orders)[0] for _ in range(repeat)]
    startup, run = min(startups), min(runs)
    after = run - startup
    return {"events": events, "run_s": run, "startup_s": startup, "events_s": events / run,
            "events_s_after_startup": events / after if after > 0 else None,
            "run_reps_s": runs, "startup_reps_s": startups}


def _write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")


# ---- build cost ----------------------------------------------------------------------------------


def _fresh_process(command: list[str]) -> list[str]:
    """``command`` started by a forking /bin/sh.  Linux carries a parent's peak RSS over into the
    ``ru_maxrss`` of a child it spawns directly (vfork + exec shares the parent's memory map until
    the exec), so the child would report this benchmark's peak instead of its own; a child forked
    from a small shell starts from the shell's few MB."""
    if os.name == "posix" and os.path.exists("/bin/sh"):
        return ["/bin/sh", "-c", '"$0" "$@"; exit $?', *command]
    return command


def measure_build(path: Path, repeat: int) -> dict[str, Any]:
    child = Path(__file__).resolve().parent / "build_one.py"
    reps = []
    for _ in range(repeat):
        done = subprocess.run(_fresh_process([sys.executable, str(child), str(path)]), capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"build_one.py exited {done.returncode}: {done.stderr.strip()[-800:]}")
        reps.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(reps, key=lambda r: r["seconds"])
    return {"rules": best["rules"], "seconds": best["seconds"], "peak_rss_mb": max(r["peak_rss_mb"] for r in reps),
            "warm_seconds": min(r["warm_seconds"] for r in reps),
            "warm_peak_rss_mb": max(r["warm_peak_rss_mb"] for r in reps),
            "rss_before_mb": best["rss_before_mb"],
            "vmhwm_mb": max((r.get("vmhwm_mb") or 0.0) for r in reps) or None, "reps": reps}


# ---- report ----------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _environment() -> dict[str, Any]:
    commit = None
    try:  # read-only
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        ruledesk_version = version("ruledesk")
    except Exception:  # noqa: BLE001 - informational only
        ruledesk_version = None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "ruledesk": ruledesk_version, "commit": commit}


def report(results: dict[str, Any]) -> str:
    env = results["environment"]
    quick = results["quick"]
    lines = [
        f"ruledesk benchmark{' (--quick)' if quick else ''}: {env['implementation']} {env['python']}, "
        f"{env['cpus']} CPUs, {env['machine']}, ruledesk {env['ruledesk']} @ {env['commit']}",
        "",
        f"Matching: {results['config']['match_events']:,} pre-validated events over 10 event names, best of "
        f"{results['config']['repeat']}; (a) `Engine.match`, (p) a plain generated function per event, (b) "
        f"hand-written lambdas; end to end: {results['config']['run_events']:,} events, best of "
        f"{results['config']['run_repeat']}.",
        "",
        "| rules | rules/event | matches/event | (a) ruledesk µs/event | (p) plain generated µs/event "
        "| (b) lambdas µs/event | (p)/(a) | (b)/(a) | (c) run events/s | (c) start-up s | (c) events/s after start-up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["matching"]:
        cli = row.get("cli") or {}
        lines.append(
            f"| {row['rules']:,} | {row['rules_per_event']:.1f} | {row['equivalence']['matches_per_event']:.2f} "
            f"| {row['a_us']:.2f} | {row['p_us']:.2f} | {row['b_us']:.2f} | {row['speedup_plain']:.2f}x "
            f"| {row['speedup']:.2f}x | {_fmt(cli.get('events_s'), 0)} | {_fmt(cli.get('startup_s'), 2)} "
            f"| {_fmt(cli.get('events_s_after_startup'), 0)} |")
    if results.get("cli_error"):
        lines += ["", f"(c) not measured: {results['cli_error']}"]
    lines += ["", "The event path, µs per event: `Engine.process` (dry run, decisions built, nothing written) of "
              "pre-validated events with explain off, the default deciding clause and the full trace; the event's "
              "`match` vs `match_why`; and from JSON text (parse, validate, process with deciding clauses) against "
              "`json.loads` of the same text plus the lambdas.", "",
              "| rules | match | match_why | process, explain off | deciding | full | deciding cost "
              "| from JSON text | json.loads | lambdas | text / (json.loads + lambdas) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["matching"]:
        ex = row.get("explain")
        if ex:
            lines.append(f"| {row['rules']:,} | {ex['match_us']:.2f} | {ex['match_why_us']:.2f} "
                         f"| {ex['process_off_us']:.1f} | {ex['process_deciding_us']:.1f} | {ex['process_full_us']:.1f} "
                         f"| {ex['deciding_cost_pct']:+.1f}% | {ex['process_text_us']:.1f} | {ex['json_loads_us']:.1f} "
                         f"| {ex['lambdas_us']:.1f} | {ex['text_vs_reference_x']:.2f}x |")
    for key in ("validation", "decisions"):
        if results.get(key, {}).get("table"):
            lines += ["", results[key]["table"]]
    lines += ["", "| rules | parse+check+compile s | peak RSS MB | RSS before build MB | then warm() s "
              "| build with warm() s | peak RSS with warm() MB |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in BUILD_COUNTS:
        build = results["build"].get(str(n))
        if build is None:
            lines.append(f"| {n:,} | skipped (--quick) | | | | | |")
        else:
            lines.append(f"| {n:,} | {build['seconds']:.2f} | {build['peak_rss_mb']:.0f} "
                         f"| {build['rss_before_mb']:.0f} | {build['warm_seconds']:.2f} "
                         f"| {build['seconds'] + build['warm_seconds']:.2f} | {build['warm_peak_rss_mb']:.0f} |")
    lines += ["", "Targets:"]
    for target in results["targets"]:
        lines.append(f"- {target['status']:<4}  {target['name']}: {target['measured']}")
    return "\n".join(lines)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []

    def add(name: str, value: float | None, ok, shown: str) -> None:
        status = "n/a" if value is None else ("PASS" if ok(value) else "FAIL")
        targets.append({"name": name, "value": value, "status": status, "measured": shown if value is not None
                        else "not measured"})

    row = next((r for r in results["matching"] if r["rules"] == 1000), None)
    speedup = row["speedup"] if row else None
    add(f"(a) >= {TARGET_SPEEDUP:g}x faster than (b) at 1000 rules", speedup, lambda v: v >= TARGET_SPEEDUP,
        f"{speedup:.2f}x" if speedup else "")
    plain = row["speedup_plain"] if row else None
    add(f"(a) >= {TARGET_SPEEDUP_PLAIN:g}x faster than (p) at 1000 rules", plain,
        lambda v: v >= TARGET_SPEEDUP_PLAIN, f"{plain:.2f}x" if plain else "")
    explain = row.get("explain") if row else None
    text = explain["text_vs_reference_x"] if explain else None
    add(f"process() from JSON text <= {TARGET_TEXT_X:g}x (json.loads + lambdas) at 1000 rules", text,
        lambda v: v <= TARGET_TEXT_X, f"{text:.2f}x" if text else "")
    cost = explain["deciding_cost_pct"] if explain else None
    add(f"deciding-clause record costs < {TARGET_EXPLAIN_PCT:g}% of process() at 1000 rules", cost,
        lambda v: v < TARGET_EXPLAIN_PCT, f"{cost:+.1f}%" if cost is not None else "")
    for target in results.get("validation", {}).get("targets", []) + results.get("decisions", {}).get("targets", []):
        add(target["name"], target["value"], lambda v, limit=target["limit"]: v <= limit, target["shown"])
    b1k, b10k = results["build"].get("1000"), results["build"].get("10000")
    add(f"parse+check+compile of 1,000 rules < {TARGET_BUILD_1K_S:g} s", b1k and b1k["seconds"],
        lambda v: v < TARGET_BUILD_1K_S, f"{b1k['seconds']:.2f} s" if b1k else "")
    add(f"parse+check+compile of 10,000 rules < {TARGET_BUILD_10K_S:g} s", b10k and b10k["seconds"],
        lambda v: v < TARGET_BUILD_10K_S, f"{b10k['seconds']:.2f} s" if b10k else "")
    add(f"... and < {TARGET_BUILD_10K_MB:g} MB peak RSS", b10k and b10k["peak_rss_mb"],
        lambda v: v < TARGET_BUILD_10K_MB, f"{b10k['peak_rss_mb']:.0f} MB" if b10k else "")
    for n, limit in ((1000, TARGET_BUILD_1K_S), (10000, TARGET_BUILD_10K_S)):
        build = results["build"].get(str(n))
        total = build and build["seconds"] + build["warm_seconds"]
        add(f"build of {n:,} rules with warm() < {limit:g} s", total, lambda v, limit=limit: v < limit,
            f"{total:.2f} s" if build else "")
    warm_peak = b10k and b10k["warm_peak_rss_mb"]
    add(f"... 10,000 rules with warm() < {TARGET_BUILD_10K_MB:g} MB peak RSS", warm_peak,
        lambda v: v < TARGET_BUILD_10K_MB, f"{warm_peak:.0f} MB" if b10k else "")
    return targets


# ---- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions, no 10,000-rule build "
                                                             "(about 1 minute instead of about 8)")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    from ruledesk.engine import Engine

    started = time.perf_counter()
    results: dict[str, Any] = {"quick": args.quick, "seed": args.seed, "environment": _environment(),
                               "config": {k: v for k, v in cfg.items() if k != "build_repeat"},
                               "matching": [], "build": {}}
    raw_events = make_events(max(cfg["match_events"], cfg["run_events"]), args.seed)
    validator = Engine.from_source("", "empty.rules")
    events = [validator.event(raw) for raw in raw_events[:cfg["match_events"]]]
    lines = [json.dumps(raw, ensure_ascii=False) for raw in raw_events[:cfg["match_events"]]]

    with tempfile.TemporaryDirectory(prefix="ruledesk-bench-") as tmp:
        workdir = Path(tmp)
        orders, empty = workdir / "orders.jsonl", workdir / "empty.jsonl"
        _write_jsonl(orders, raw_events[:cfg["run_events"]])
        empty.write_text("", encoding="utf-8")
        cli_ok = True

        for n in cfg["rule_counts"]:
            specs = make_rule_specs(n, args.seed)
            text, table, plain = rules_text(specs), python_rules(specs), make_plain(specs)
            rules = workdir / f"bench-{n}.rules"
            rules.write_text(text, encoding="utf-8")
            log(f"{n} rules: building ...")
            engine = Engine.from_source(text, str(rules), explain="full")  # traced: process() with every level
            try:
                equivalence = check_equivalence(engine, table, events, sample=500)
                check_plain(engine, plain, events[:500])
            except EquivalenceError as exc:
                fail(f"{n} rules: {exc}")
            log(f"  (a) == (p) == (b) on {equivalence['events']} events "
                f"({equivalence['matches_per_event']:.2f} matching rules per event); timing matching ...")
            row: dict[str, Any] = {"rules": n, "equivalence": equivalence,
                                   "rules_per_event": sum(len(v) for v in table.values()) / 10}
            row.update(measure_matching(engine, table, plain, events, cfg))
            log(f"  (a) {row['a_us']:.2f} µs/event, (p) {row['p_us']:.2f}, (b) {row['b_us']:.2f}: "
                f"{row['speedup_plain']:.2f}x (p), {row['speedup']:.2f}x (b); timing process ...")
            count = cfg["process_events"]
            row["explain"] = measure_process(engine, table, events[:count], lines[:count], cfg)
            log(f"  process: deciding +{row['explain']['deciding_cost_pct']:.1f}% of explain off, from JSON text "
                f"{row['explain']['process_text_us']:.1f} µs = {row['explain']['text_vs_reference_x']:.2f}x "
                f"(json.loads + lambdas)")
            if cli_ok and n in cfg["cli_counts"]:
                try:
                    row["cli_check"] = check_cli(engine, rules, raw_events, workdir)
                    log(f"  (c) `ruledesk run` fired == engine.match on {row['cli_check']['checked']} events; "
                        f"timing {cfg['run_events']:,} events ...")
                    row["cli"] = measure_cli(rules, orders, empty, cfg["run_events"],
                                             cfg["run_repeat"] if n < 10000 else 1)
                    log(f"  (c) {row['cli']['events_s']:,.0f} events/s, start-up {row['cli']['startup_s']:.2f} s")
                except (RuntimeError, OSError) as exc:
                    cli_ok = False
                    results["cli_error"] = str(exc).splitlines()[0][:300]
                    log(f"  (c) not measured: {exc}")
            results["matching"].append(row)
            del engine, table, plain

        for n in BUILD_COUNTS:
            repeat = cfg["build_repeat"].get(n)
            if not repeat:
                continue
            path = workdir / f"build-{n}.rules"
            path.write_text(rules_text(make_rule_specs(n, args.seed)), encoding="utf-8")
            log(f"build {n:,} rules in a fresh process (best of {repeat}) ...")
            results["build"][str(n)] = measure_build(path, repeat)

    log("order validation ...")
    results["validation"] = measure_order_validation(args.quick)
    log("decisions as JSON lines ...")
    results["decisions"] = measure_decision_lines(args.quick)
    results["targets"] = evaluate_targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    print(report(results))
    print(f"\n(benchmark took {results['elapsed_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
