"""Order validation cost: ruledesk's order validation from JSON text and from a dict, against JSON decoding.

    python bench/validation.py [--quick] [--json PATH]

Two workloads: the example orders (examples/orders.jsonl: the "order" of each event line, or the
line itself when it is a bare order; µs per order, averaged over them) and one 50-item order
(bench/workload.py's order and item shape).  For each, µs per order of:

  json.loads            ``json.loads(text)`` (floats inexact: the yardstick of the targets)
  json.loads+Decimal    ``json.loads(text, parse_float=Decimal)`` (what ``ruledesk run`` used to read lines with)
  orjson.loads          if orjson is installed (floats inexact)
  pydantic_core.from_json  (floats inexact)
  msgspec+Decimal       ``msgspec.json.Decoder(float_hook=Decimal).decode`` (exact: ``load_json``'s fast path)
  ours from text        ``parse_order_json(text)``
  ours from dict        ``parse_order(dict)`` (the dict decoded beforehand)
  pydantic from dict    ``pydantic_parse_order(dict)``: the path ``parse_order`` took before (the reference)

Every candidate is checked first (ours equal the reference on every order).  Repetitions are
interleaved in one process and the best of N counts (the machine may be shared: compare ratios of
one run, not numbers across runs); each repetition runs with the cyclic GC paused, like
bench/run.py.  Targets: ours from text at most 1.5x json.loads; ours from dict no slower than ours
from text.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import _loops_for, _timed  # noqa: E402
from bench.workload import _item, make_orders  # noqa: E402
from ruledesk.engine.model.order import parse_order, parse_order_json, pydantic_parse_order  # noqa: E402

FULL = {"min_rep_s": 0.05, "repeat": 15}  # many short repetitions: on a shared machine some are undisturbed
QUICK = {"min_rep_s": 0.02, "repeat": 3}
TARGET_TEXT_VS_JSON = 1.5
TARGET_DICT_VS_TEXT = 1.0
BIG_ITEMS = 50


def example_texts() -> list[str]:
    """The example orders as JSON text, each as its own line holds it."""
    texts = []
    for line in (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            data = json.loads(line)
            texts.append(json.dumps(data["order"], ensure_ascii=False) if "event" in data else line)
    return texts


def stream_texts(count: int = 2000, seed: int = 7) -> list[str]:
    """``count`` different orders of bench/workload.py (thousands of distinct prices): the caches
    of converted strings hit as often as a real stream makes them, not on every value."""
    return [json.dumps(order, ensure_ascii=False) for order in make_orders(count, seed)]


def big_order_text(items: int = BIG_ITEMS, seed: int = 1) -> str:
    """One order of bench/workload.py's shape with ``items`` items."""
    order = make_orders(1, seed)[0]
    rng = random.Random(seed)
    order["order_items"] = [_item(rng, int(order["id"]), index) for index in range(items)]
    return json.dumps(order, ensure_ascii=False)


def candidates() -> dict[str, Callable[[Any], Any] | None]:
    """name -> function of a text (or, for "from dict", of the decoded dict); None if not installed."""
    import msgspec
    import pydantic_core

    try:
        import orjson
    except ImportError:
        orjson = None
    exact = msgspec.json.Decoder(float_hook=Decimal).decode
    return {
        "json.loads": json.loads,
        "json.loads+Decimal": lambda text: json.loads(text, parse_float=Decimal),
        "orjson.loads": orjson.loads if orjson is not None else None,
        "pydantic_core.from_json": pydantic_core.from_json,
        "msgspec+Decimal": exact,
        "ours from text": parse_order_json,
        "ours from dict": parse_order,
        "pydantic from dict": pydantic_parse_order,
    }


_FROM_DICT = ("ours from dict", "pydantic from dict")


def _check(texts: list[str]) -> None:
    for text in texts:
        reference = pydantic_parse_order(json.loads(text, parse_float=Decimal))
        for got in (parse_order_json(text), parse_order(json.loads(text, parse_float=Decimal))):
            if got != reference or list(got) != list(reference):
                raise AssertionError(f"fast validation differs from the reference on {text[:80]}...")


def measure_workload(texts: list[str], cfg: dict[str, Any]) -> dict[str, Any]:
    _check(texts)
    dicts = [json.loads(text, parse_float=Decimal) for text in texts]
    loops: dict[str, Callable[[int], None]] = {}
    for name, function in candidates().items():
        if function is None:
            continue
        inputs = dicts if name in _FROM_DICT else texts

        def loop(n: int, function=function, inputs=inputs) -> None:
            for _ in range(n):
                for value in inputs:
                    function(value)

        loops[name] = loop
    counts = {name: _loops_for(loop, cfg["min_rep_s"]) for name, loop in loops.items()}
    reps: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(cfg["repeat"]):  # interleaved: every candidate once per round
        for name, loop in loops.items():
            reps[name].append(_timed(loop, counts[name]) / (counts[name] * len(texts)) * 1e6)
    best = {name: min(times) for name, times in reps.items()}
    return {"orders": len(texts), "mean_bytes": sum(len(t.encode()) for t in texts) / len(texts),
            "us": best, "reps_us": reps, "loops": counts,
            "vs_json": {name: us / best["json.loads"] for name, us in best.items()}}


def measure_validation(quick: bool = False) -> dict[str, Any]:
    """Raw numbers (µs per order, ratios to json.loads) for the example orders and a 50-item order."""
    cfg = QUICK if quick else FULL
    results: dict[str, Any] = {"quick": quick, "workloads": {}}
    for name, texts in (("examples", example_texts()), (f"order with {BIG_ITEMS} items", [big_order_text()]),
                        ("2,000 different orders", stream_texts(500 if quick else 2000))):
        results["workloads"][name] = measure_workload(texts, cfg)
    results["targets"] = []
    for name, numbers in results["workloads"].items():
        us = numbers["us"]
        text_ratio = us["ours from text"] / us["json.loads"]
        dict_ratio = us["ours from dict"] / us["ours from text"]
        results["targets"].append({"workload": name, "what": f"ours from text <= {TARGET_TEXT_VS_JSON}x json.loads",
                                   "value": text_ratio, "ok": text_ratio <= TARGET_TEXT_VS_JSON})
        results["targets"].append({"workload": name, "what": "ours from dict <= ours from text",
                                   "value": dict_ratio, "ok": dict_ratio <= TARGET_DICT_VS_TEXT})
    return results


def report(results: dict[str, Any]) -> str:
    names = list(results["workloads"])
    head = "| | " + " | ".join(f"{name}: µs/order | x json.loads" for name in names) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(names)]
    rows = list(next(iter(results["workloads"].values()))["us"])
    for row in rows:
        cells = []
        for name in names:
            numbers = results["workloads"][name]
            cells += [f"{numbers['us'][row]:.1f}", f"{numbers['vs_json'][row]:.2f}"]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    sizes = ", ".join(f"{name}: {w['orders']} order(s), {w['mean_bytes']:.0f} bytes each on average"
                      for name, w in results["workloads"].items())
    lines += ["", sizes, ""]
    for target in results["targets"]:
        lines.append(f"- {target['workload']}: {target['what']}: {target['value']:.2f} "
                     f"{'PASS' if target['ok'] else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter repetitions, fewer of them")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    args = parser.parse_args(argv)
    results = measure_validation(args.quick)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
