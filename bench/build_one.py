"""Child process of bench/run.py: parse+check+compile one rule file, report time and peak memory.

    python bench/build_one.py RULES_FILE

Prints one JSON object: ``rules`` (compiled), ``seconds`` (wall time of ``build_ruleset``, imports
and catalogue set-up excluded), ``rss_before_mb`` (peak RSS after the imports, before the build) and
``peak_rss_mb`` (``ru_maxrss`` of this process after the build: interpreter, libraries, rule text,
parse trees, AST, generated code and the compiled Ruleset), then ``warm_seconds`` and
``warm_peak_rss_mb``: ``Ruleset.warm()`` afterwards (everything otherwise compiled on first use);
``cpu_seconds`` and ``warm_cpu_seconds`` are the same two steps in CPU time of this process, which
a shared machine's load disturbs less than wall time. Run it in a fresh process per
measurement so that nothing else lives in the heap.

Start it through a small intermediate process (bench/run.py uses ``/bin/sh``): on Linux a child
spawned with vfork/exec straight from a big parent inherits the parent's peak RSS as its own
``ru_maxrss`` floor, which would report the benchmark's memory instead of the build's.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _maxrss_mb() -> float:
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return kilobytes / 1024 / (1024 if sys.platform == "darwin" else 1)


def _vmhwm_mb() -> float | None:
    """The kernel's high-water RSS of this process image (Linux), a cross-check of ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(path: str) -> None:
    from ruledesk.engine import default_actions, default_events
    from ruledesk.engine.lang.ruleset import build_ruleset

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    events, actions = default_events(), default_actions()
    before = _maxrss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    ruleset = build_ruleset({path: text}, events, actions)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak = _maxrss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    ruleset.warm()
    warm_seconds, warm_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"rules": len(ruleset.rules), "seconds": seconds, "rss_before_mb": before,
                      "peak_rss_mb": peak, "vmhwm_mb": _vmhwm_mb(), "warm_seconds": warm_seconds,
                      "warm_peak_rss_mb": _maxrss_mb(), "cpu_seconds": cpu_seconds,
                      "warm_cpu_seconds": warm_cpu_seconds}))


if __name__ == "__main__":
    main(sys.argv[1])
