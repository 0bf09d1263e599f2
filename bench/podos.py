"""podOS client benchmark: submissions per second over loopback, one command, one table.

    python bench/podos.py [--orders N] [--json PATH]

Starts `ruledesk podos simulate --port 0` as a subprocess (the client and the server share no GIL) and
submits N new orders (each answered 201) at concurrency 1 (the sync PodosClient, one call after the
other), 10 and 50: the AsyncPodosClient (asyncio.gather under a semaphore, one pooled client) beside a
thread pool of sync PodosClients (one per thread), runs interleaved, best of 3 each. Prints the table
(concurrency, client, orders, seconds, orders/s, p50/p99 latency of a submission, and the CPU each process
used per second of the run: 100% is one core, and a process near it is the bottleneck) and checks that the
simulator holds exactly as many orders as were submitted (GET /_sim/orders).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from ruledesk.actions.podos.client import AsyncPodosClient, PodosClient  # noqa: E402

TOKEN = "bench-token"
PROJECT = "bench"
REPEAT = 3
RUNS = [(1, "sync"), (10, "async"), (10, "sync, thread pool"), (50, "async"), (50, "sync, thread pool")]
_order_ids = itertools.count(1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_order() -> tuple[dict[str, Any], str]:
    """A new order and its idempotency key (a fresh Order Desk order id: podOS answers 201, never a duplicate)."""
    order_id = f"bench-{next(_order_ids)}"
    return {
        "order_desk_order_id": order_id,
        "store_id": "10001",
        "mail_class": "Standard",
        "ship_to": {"first_name": "Ada", "last_name": "Lovelace", "address1": "1 Main St", "city": "Springfield",
                    "state": "IL", "postal_code": "62701", "country": "US", "email": "ada@example.com"},
        "items": [{"line": "1", "sku": "POSTER-SUNRISE-18X24", "variant_id": "pv-55012", "quantity": 1},
                  {"line": "2", "sku": "3001C-BLK-L", "gfn_variant_id": "gfn-var-20103", "quantity": 2,
                   "print_url": "https://example.com/art/2.png"}],
    }, f"job-{order_id}"


class SimulatorProcess:
    """`ruledesk podos simulate --port 0` in a subprocess; ``url`` from the line it prints first."""

    def __init__(self) -> None:
        env = {**os.environ, "PODOS_TOKEN": TOKEN}
        self.proc = subprocess.Popen([sys.executable, "-m", "ruledesk.engine.cli", "podos", "simulate", "--port", "0"],
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        timer = threading.Timer(60, self.proc.kill)
        timer.start()
        first = self.proc.stdout.readline()
        timer.cancel()
        found = re.search(r"http://[\w.\[\]:]+:\d+", first)
        if not found:
            self.stop()
            raise SystemExit(f"the simulator did not say where it listens: {first!r}")
        self.url = found.group(0)

    def stored_orders(self) -> int:
        answer = httpx.get(f"{self.url}/_sim/orders", headers={"Authorization": f"Bearer {TOKEN}",
                                                               "X-Podos-Project": PROJECT}, timeout=60)
        answer.raise_for_status()
        data = answer.json()
        return len(data["orders"] if isinstance(data, dict) else data)

    def cpu_seconds(self) -> float:
        """User and system CPU the simulator process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def timed_submit(client: PodosClient, latencies: list[float]) -> bool:
    order, key = new_order()
    start = time.perf_counter()
    submission = client.submit(order, key)
    latencies.append(time.perf_counter() - start)
    return submission.created


def run_sync(url: str, orders: int, concurrency: int) -> tuple[float, list[float], int]:
    """``orders`` submissions from ``concurrency`` threads, each with its own PodosClient (so one connection)."""
    latencies: list[float] = []
    local = threading.local()
    clients: list[PodosClient] = []

    def submit(_: int) -> bool:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = PodosClient(url, PROJECT, TOKEN, retries=0)
            clients.append(client)
        return timed_submit(client, latencies)

    if concurrency == 1:
        with PodosClient(url, PROJECT, TOKEN, retries=0) as client:
            start = time.perf_counter()
            created = sum(timed_submit(client, latencies) for _ in range(orders))
            return time.perf_counter() - start, latencies, created
    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        created = sum(pool.map(submit, range(orders)))
        seconds = time.perf_counter() - start
    for client in clients:
        client.close()
    return seconds, latencies, created


def run_async(url: str, orders: int, concurrency: int) -> tuple[float, list[float], int]:
    """``orders`` submissions as coroutines on one AsyncPodosClient, at most ``concurrency`` at a time."""
    latencies: list[float] = []

    async def main() -> tuple[float, int]:
        # httpx's default pool limits: with httpcore 1.0.9, a pool keeping all 50 connections alive is slower
        # (its bookkeeping scans every connection per request) than the default's churn above 20
        async with AsyncPodosClient(url, PROJECT, TOKEN, retries=0) as client:
            gate = asyncio.Semaphore(concurrency)

            async def submit() -> bool:
                order, key = new_order()
                async with gate:
                    begin = time.perf_counter()
                    submission = await client.submit(order, key)
                    latencies.append(time.perf_counter() - begin)
                    return submission.created

            start = time.perf_counter()
            created = sum(await asyncio.gather(*(submit() for _ in range(orders))))
            return time.perf_counter() - start, created

    seconds, created = asyncio.run(main())
    return seconds, latencies, created


def measure(run: Callable[..., tuple[float, list[float], int]], sim: SimulatorProcess, orders: int,
            concurrency: int) -> dict[str, Any]:
    server_cpu, client_cpu = sim.cpu_seconds(), time.process_time()
    seconds, latencies, created = run(sim.url, orders, concurrency)
    server_cpu, client_cpu = sim.cpu_seconds() - server_cpu, time.process_time() - client_cpu
    if created != orders:
        raise SystemExit(f"{orders - created} of {orders} submissions were not answered 201")
    ordered = sorted(latencies)
    return {"orders": orders, "seconds": seconds, "orders_s": orders / seconds,
            "p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
            "client_cpu": client_cpu / seconds, "server_cpu": server_cpu / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000, metavar="N", help="submissions per run (default 1000)")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    args = parser.parse_args(argv)
    sim = SimulatorProcess()
    submitted = 0
    try:
        runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for repeat in range(REPEAT):  # interleaved: every configuration once, then again
            for concurrency, name in RUNS:
                run = run_async if name == "async" else run_sync
                row = measure(run, sim, args.orders, concurrency)
                submitted += args.orders
                runs.setdefault((concurrency, name), []).append(row)
                log(f"run {repeat + 1}/{REPEAT}: concurrency {concurrency}, {name}: {row['orders_s']:,.0f} orders/s")
        stored = sim.stored_orders()
    finally:
        sim.stop()
    if stored != submitted:
        raise SystemExit(f"submitted {submitted} orders (each answered 201), the simulator holds {stored}")
    best = {key: max(rows, key=lambda r: r["orders_s"]) for key, rows in runs.items()}
    print(f"podOS submissions over loopback (simulator in a subprocess), best of {REPEAT}; "
          f"{submitted:,} orders submitted, {stored:,} stored\n")
    print("| concurrency | client | orders | seconds | orders/s | p50 ms | p99 ms | client CPU | simulator CPU |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (concurrency, name), row in best.items():
        print(f"| {concurrency} | {name} | {row['orders']:,} | {row['seconds']:.2f} | {row['orders_s']:,.0f} "
              f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['client_cpu']:.0%} | {row['server_cpu']:.0%} |")
    if args.json:
        raw = {f"{c} {name}": rows for (c, name), rows in runs.items()}
        Path(args.json).write_text(json.dumps(raw, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
