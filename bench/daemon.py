"""ruledesk daemon benchmark: one command, one table.

    python bench/daemon.py [--quick] [--json PATH] [--no-postgres]

Measures `ruledesk serve` as a user runs it (a subprocess), fed over HTTP by a separate load
process (bench/httpload.py: 32 keep-alive connections, each posting one event at a time), with
100 generated rules (bench/workload.py), orders getting four events each (an import, then three
others), and beside it, interleaved in the same run, the bare store loop: the same writes without
rules (insert the event; mark it done, upsert the order, insert a ~1 KB decision) one event per
transaction and 100 per transaction:

  * SQLite: events/s from the first request to the last committed decision, with the rules run in
    the serving process (--workers 0) and in a worker process (--workers 1);
  * PostgreSQL (a throwaway cluster, skipped with --no-postgres): the same with 1, 2 and 4 worker
    processes, beside the bare loop on PostgreSQL;
  * reload latency with 1,000 rules: from a rule file saved to the new ruleset answering in
    /readyz (debounce included), p50 and max of the reloads;
  * memory: the daemon's RSS while it processes 100,000 events (20,000 in --quick) from a followed
    file, sampled as it goes: it must stay flat.

Prints a markdown table and the targets with PASS/FAIL; ``--json PATH`` writes every raw number.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import make_events, make_rules  # noqa: E402

TARGET_EVENTS_S = 2000.0
TARGET_VS_BARE = 0.40
TARGET_RELOAD_P99_S = 1.5
TARGET_MEMORY_GROWTH = 1.10  # RSS at the end at most 10% above RSS after the first fifth

FULL = {"events": 20000, "repeat": 2, "reloads": 12, "memory_events": 100000, "pg_events": 10000}
QUICK = {"events": 4000, "repeat": 1, "reloads": 4, "memory_events": 20000, "pg_events": 3000}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ruledesk() -> list[str]:
    return [sys.executable, "-m", "ruledesk.engine.cli"]


def stream(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` events, four per order: an import first, then three of the workload's other events."""
    events = make_events(n, seed)
    for i, event in enumerate(events):
        event.pop("store", None)
        order_id = str(500000 + i // 4)
        event["id"] = f"bench-{seed}-{i}"
        event["order"]["id"] = order_id
        if i % 4 == 0:
            event["event"], event["payload"] = "Order is Imported", {}
        else:
            if event["event"] in ("Order is Imported", "Order is Created Manually"):
                event["event"], event["payload"] = "Order Confirmed", {}
            event["order"] = {"id": order_id}
    return events


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")


# ---- the daemon ----------------------------------------------------------------------------------

class Daemon:
    """`ruledesk serve` as a subprocess, its port read from its start-up line."""

    def __init__(self, workdir: Path, db: str, rules: Path, *args: str) -> None:
        self.db = db
        command = ruledesk() + ["serve", "--rules", str(rules), "--db", db, "--port", "0", "--quiet",
                                "--log-level", "warning", "--pidfile", str(workdir / "ruledesk.pid"), *args]
        self.process = subprocess.Popen(command, cwd=workdir, stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + 60
        for line in self.process.stderr:
            found = re.search(r"serving on http://[\d.]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
            if time.monotonic() > deadline:
                break
        if self.port is None:
            raise RuntimeError(f"the daemon did not start: {line}")
        self.errors: list[str] = []
        threading.Thread(target=lambda: self.errors.extend(self.process.stderr), daemon=True).start()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def token(db: str) -> str:
    out = subprocess.run(ruledesk() + ["tokens", "create", "--db", db, "--store", "default", "--scope", "write"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[-1]


def done_count(store: Any) -> int:
    return store.counts().get("events_done", 0)


def http_run(workdir: Path, db: str, rules: Path, bodies: Path, n: int, *args: str) -> dict[str, Any]:
    """Events/s from the first request to the last committed decision."""
    from ruledesk.engine.store import open_store

    secret = token(db)
    daemon = Daemon(workdir, db, rules, *args)
    store = open_store(db)
    try:
        started = time.perf_counter()
        client = subprocess.Popen([sys.executable, str(ROOT / "bench" / "httpload.py"), "--port", str(daemon.port),
                                   "--token", secret, "--connections", "32", str(bodies)],
                                  stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while done_count(store) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        finished = time.perf_counter()
        acked = json.loads(client.communicate(timeout=60)[0])
        counts = store.counts()
    finally:
        daemon.stop()
        store.close()
    if acked["ok"] != n or counts.get("events_done", 0) != n:
        raise RuntimeError(f"not every event was taken and processed: {acked}, {counts}; {daemon.errors[-3:]}")
    seconds = finished - started
    return {"events": n, "seconds": seconds, "events_s": n / seconds,
            "intake_events_s": n / acked["seconds"]}


# ---- the bare loop: the same writes, no rules --------------------------------------------------------

def bare_loop(db: str, events: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Insert each event, then mark it done, upsert its order and insert a decision, ``batch``
    events per transaction, through the store's own connection and schema."""
    from ruledesk.engine.store import open_store
    from ruledesk.engine.store.base import Inbound

    store = open_store(db)
    decision = json.dumps({"event": "x", "fired": ["a", "b"], "actions": [], "why": [["r", 0, 0, ["x", "y"]]] * 12,
                           "order": {"id": "1", "email": "someone@example.com", "folder": "New"}})
    rows = [(Inbound(e["id"], "default", e["order"]["id"], e["event"], json.dumps(e)), json.dumps(e["order"]))
            for e in events]
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        now = time.time()
        with store._transaction() as tx:
            store._insert_events(tx, [item for item, _ in chunk], now)
        with store._transaction() as tx:
            tx.many("UPDATE events SET status = 'done', processed_at = ? WHERE id = ?", [(now, i.id) for i, _ in chunk])
            store._write_orders(tx, {(i.store, i.order_id): (order, "New") for i, order in chunk}, now)
            tx.many("INSERT INTO decisions (event_id, top_event_id, store, order_id, name, ruleset, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(i.id, i.id, i.store, i.order_id, i.name, "sha256:x", decision, now) for i, _ in chunk])
    seconds = time.perf_counter() - started
    store.close()
    return {"events": len(rows), "batch": batch, "events_s": len(rows) / seconds}


# ---- reload latency and memory -------------------------------------------------------------------------

def reload_latency(workdir: Path, reloads: int) -> dict[str, Any]:
    import httpx

    text, _ = make_rules(1000, 7)
    rules = workdir / "reload-rules"
    rules.mkdir()
    target = rules / "bench.rules"
    target.write_text(text, encoding="utf-8")
    daemon = Daemon(workdir, f"sqlite:///{workdir}/reload.db", rules)
    samples = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            version = client.get("/readyz").json()["ruleset"]["version"]
            for number in range(reloads):
                time.sleep(0.5)
                changed = text.replace('rule "r00000"', f'rule "r00000 v{number}"', 1)
                saved = time.perf_counter()
                target.write_text(changed, encoding="utf-8")
                deadline = saved + 30
                while time.perf_counter() < deadline:
                    now_version = client.get("/readyz").json()["ruleset"]["version"]
                    if now_version != version:
                        samples.append(time.perf_counter() - saved)
                        version = now_version
                        break
                    time.sleep(0.01)
                else:
                    raise RuntimeError("a reload did not happen within 30 s")
    finally:
        daemon.stop()
    samples.sort()
    return {"reloads": len(samples), "p50_s": statistics.median(samples), "max_s": samples[-1],
            "p99_s": samples[min(len(samples) - 1, int(round(0.99 * (len(samples) - 1))))], "samples": samples}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory(workdir: Path, rules: Path, n: int) -> dict[str, Any]:
    from ruledesk.engine.store import open_store

    path = workdir / "memory.jsonl"
    write_jsonl(path, stream(n, seed=3))
    db = f"sqlite:///{workdir}/memory.db"
    daemon = Daemon(workdir, db, rules, "--follow", str(path), "--exit-when-idle", "--static")
    store = open_store(db)
    samples = []
    try:
        while daemon.process.poll() is None:
            try:
                samples.append((done_count(store), rss_mb(daemon.process.pid)))
            except (OSError, Exception):  # the process ended between the poll and the read
                break
            time.sleep(0.25)
        daemon.process.wait(timeout=60)
        done = done_count(store)
    finally:
        store.close()
        if daemon.process.poll() is None:
            daemon.stop()
    if done != n:
        raise RuntimeError(f"only {done} of {n} events were processed")
    fifth = [rss for count, rss in samples if count >= n // 5] or [samples[-1][1]]
    last = [rss for count, rss in samples if count >= n * 9 // 10] or [samples[-1][1]]
    return {"events": n, "rss_after_fifth_mb": fifth[0], "rss_end_mb": max(last), "rss_peak_mb": max(r for _, r in samples),
            "growth": max(last) / fifth[0], "samples": samples[:: max(1, len(samples) // 40)]}


# ---- the run --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events (about 2 minutes instead of 6)")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    results: dict[str, Any] = {"quick": args.quick, "config": cfg, "sqlite": {}, "postgres": {}}
    with tempfile.TemporaryDirectory(prefix="ruledesk-daemon-bench-") as tmp:
        workdir = Path(tmp)
        rules = workdir / "rules"
        rules.mkdir()
        rules.joinpath("bench.rules").write_text(make_rules(100)[0], encoding="utf-8")
        n = cfg["events"]
        events = stream(n)
        bodies = workdir / "bodies.jsonl"
        write_jsonl(bodies, events)

        rows: dict[str, list[dict[str, Any]]] = {}
        for repeat in range(cfg["repeat"]):  # interleaved: bare, daemon, bare, daemon ...
            for name, run in (
                    ("bare, 1 per tx", lambda db: bare_loop(db, events, 1)),
                    ("bare, 100 per tx", lambda db: bare_loop(db, events, 100)),
                    ("ruledesk serve --workers 0", lambda db: http_run(workdir, db, rules, bodies, n)),
                    ("ruledesk serve --workers 1", lambda db: http_run(workdir, db, rules, bodies, n, "--workers", "1"))):
                db = f"sqlite:///{workdir}/sqlite-{repeat}-{len(rows.get(name, []))}-{abs(hash(name))}.db"
                log(f"SQLite: {name} ({n:,} events) ...")
                rows.setdefault(name, []).append(run(db))
                log(f"  {rows[name][-1]['events_s']:,.0f} events/s")
        results["sqlite"] = {name: max(runs, key=lambda r: r["events_s"]) for name, runs in rows.items()}

        if not args.no_postgres:
            from ruledesk.engine.store.pgtemp import TempCluster
            try:
                cluster = TempCluster().start()
            except RuntimeError as exc:
                log(f"PostgreSQL skipped: {exc}")
                cluster = None
            if cluster is not None:
                try:
                    pg_n = cfg["pg_events"]
                    pg_events = events[:pg_n]
                    pg_bodies = workdir / "pg-bodies.jsonl"
                    write_jsonl(pg_bodies, pg_events)
                    for name, run in (
                            ("bare, 1 per tx", lambda db: bare_loop(db, pg_events, 1)),
                            ("bare, 100 per tx", lambda db: bare_loop(db, pg_events, 100)),
                            *((f"ruledesk serve --workers {w}",
                               (lambda w: lambda db: http_run(workdir, db, rules, pg_bodies, pg_n, "--workers",
                                                              str(w)))(w)) for w in (1, 2, 4))):
                        log(f"PostgreSQL: {name} ({pg_n:,} events) ...")
                        results["postgres"][name] = run(cluster.new_database())
                        log(f"  {results['postgres'][name]['events_s']:,.0f} events/s")
                finally:
                    cluster.stop()

        log(f"reload latency, 1,000 rules, {cfg['reloads']} reloads ...")
        results["reload"] = reload_latency(workdir, cfg["reloads"])
        log(f"memory over {cfg['memory_events']:,} events ...")
        results["memory"] = memory(workdir, rules, cfg["memory_events"])

    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def report(results: dict[str, Any]) -> None:
    sqlite = results["sqlite"]
    bare = sqlite["bare, 100 per tx"]["events_s"]
    print("| SQLite, 100 rules | events/s | vs bare batched |")
    print("|---|---:|---:|")
    for name, row in sqlite.items():
        print(f"| {name} | {row['events_s']:,.0f} | {row['events_s'] / bare:.2f} |")
    if results["postgres"]:
        pg_bare = results["postgres"]["bare, 100 per tx"]["events_s"]
        print("\n| PostgreSQL, 100 rules | events/s | vs bare batched |")
        print("|---|---:|---:|")
        for name, row in results["postgres"].items():
            print(f"| {name} | {row['events_s']:,.0f} | {row['events_s'] / pg_bare:.2f} |")
    reload, mem = results["reload"], results["memory"]
    print(f"\nreload, 1,000 rules: p50 {reload['p50_s']:.3f} s, p99 {reload['p99_s']:.3f} s, max {reload['max_s']:.3f} s"
          f" over {reload['reloads']} reloads")
    print(f"memory: RSS {mem['rss_after_fifth_mb']:.0f} MB after {mem['events'] // 5:,} events, "
          f"{mem['rss_end_mb']:.0f} MB at {mem['events']:,} (x{mem['growth']:.2f})")
    best = max(sqlite[k]["events_s"] for k in sqlite if k.startswith("ruledesk"))
    print("\n| target | measured | |\n|---|---|---|")
    for name, value, ok in (
            ("SQLite HTTP -> committed decision >= 2,000 events/s", f"{best:,.0f}/s", best >= TARGET_EVENTS_S),
            ("... >= 40% of the bare batched loop", f"{best / bare:.0%}", best / bare >= TARGET_VS_BARE),
            ("reload p99 < 1.5 s (1,000 rules)", f"{reload['p99_s']:.2f} s", reload["p99_s"] < TARGET_RELOAD_P99_S),
            ("memory flat over the events", f"x{mem['growth']:.2f}", mem["growth"] <= TARGET_MEMORY_GROWTH)):
        print(f"| {name} | {value} | {'PASS' if ok else 'FAIL'} |")


if __name__ == "__main__":
    sys.exit(main())
