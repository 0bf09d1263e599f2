"""Profile (a) or (b) alone: where matching spends its time.

    python bench/profile_match.py [--rules 1000] [--events 2000] [--loops 5] [--lambdas] [--top 25]

Builds the benchmark's ruleset and events (bench/workload.py), warms up, then runs
``engine.match(event, validated=True)`` (or, with ``--lambdas``, the hand-written lambdas) under
cProfile and prints the statistics sorted by cumulative time.  The generated ``match`` function of
each event shows up as ``<match 'Event name'>``; its quantifiers as ``builtins.any``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import check_equivalence, make_dispatch, make_events, make_rules  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--loops", type=int, default=5)
    parser.add_argument("--lambdas", action="store_true", help="profile (b), the lambdas, instead of (a)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from ruledesk.engine import Engine

    text, table = make_rules(args.rules, args.seed)
    engine = Engine.from_source(text, "bench.rules")
    events = [engine.event(raw) for raw in make_events(args.events, args.seed)]
    check_equivalence(engine, table, events)
    if args.lambdas:
        dispatch = make_dispatch(table)

        def run() -> None:
            for event in events:
                dispatch(event)
    else:
        match = engine.match

        def run() -> None:
            for event in events:
                match(event, validated=True)

    run()  # warm-up
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.loops):
        run()
    profile.disable()
    print(f"{'(b) lambdas' if args.lambdas else '(a) engine.match'}: {args.rules} rules, "
          f"{args.events} events x {args.loops}")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
