"""A small HTTP/1.1 load generator for the daemon benchmark: keep-alive connections on asyncio
streams, each posting its share of a JSONL file of request bodies one at a time (a request is
sent once the previous one on its connection is answered).  Run as a separate process so the
daemon's CPU is its own:

    python bench/httpload.py --port N --token T --connections C BODIES.jsonl

Prints one JSON line: {"sent": n, "ok": n_202, "statuses": {...}, "seconds": s}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def _connection(host: str, port: int, token: str, bodies: list[bytes], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n").encode()
    try:
        for body in bodies:
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> dict:
    with open(args.bodies, "rb") as handle:
        bodies = [line.rstrip(b"\n") for line in handle if line.strip()]
    shares = [bodies[i::args.connections] for i in range(args.connections)]
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_connection(args.host, args.port, args.token, share, statuses) for share in shares))
    return {"sent": len(bodies), "ok": statuses.get(202, 0), "statuses": statuses,
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bodies")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=32)
    print(json.dumps(asyncio.run(main_async(parser.parse_args()))))


if __name__ == "__main__":
    main()
