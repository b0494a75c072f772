"""Load benchmark of the decision service: single decisions and 10,000-order batches against 127.0.0.1.

Usage: python bench/bench_service.py [--seconds 30] [--concurrency 32] [--workers 2] [--batch-size 10000]
                                     [--phases single,batch,csv] [--url http://127.0.0.1:PORT] [--token T]

Without --url it starts its own `cancel-rules serve --workers N` on a free loopback port and stops it after.
The client is this process: raw asyncio HTTP/1.1 with one keep-alive connection per concurrent caller and
prebuilt requests, so that it costs the two shared cores as little as possible. Every loop is bounded by
--seconds and by --max-requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

import engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from orders import AS_OF, synthetic_orders  # noqa: E402  (the project's shared synthetic order generator)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    requests: int = 0

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


def _valid(policy: engine.Policy, order: dict) -> bool:
    try:
        policy.decide(order, as_of=AS_OF)
    except engine.OrderError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(host: str, port: int, path: str, body: bytes, content_type: str, token: str | None,
             accept: str = "application/json") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\nAccept: {accept}\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _caller(host: str, port: int, requests: list[bytes], offset: int, deadline: float, budget: list[int],
                  stats: Stats) -> None:
    reader = writer = None
    i = offset
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status, body, close = await _read_response(reader)
            stats.latencies.append(time.perf_counter() - start)
            stats.requests += 1
            if status != 200:
                stats.error(f"HTTP {status}: {body[:200]!r}")
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            stats.error(f"{type(exc).__name__}: {exc}")
            if writer is not None:
                writer.close()
            writer = None
        i += 1
    if writer is not None:
        writer.close()


async def _load(host: str, port: int, requests: list[bytes], seconds: float, concurrency: int,
                max_requests: int) -> tuple[Stats, float]:
    stats = Stats()
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_caller(host, port, requests, k * 7919, deadline, budget, stats)
                           for k in range(concurrency)))
    return stats, time.perf_counter() - start


def _cpu_seconds(pids: list[int]) -> float:
    try:
        import psutil
    except ImportError:
        return float("nan")
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_phase(name: str, host: str, port: int, requests: list[bytes], args: argparse.Namespace,
              orders_per_request: int, server_pid: int | None) -> dict:
    # Warm every worker (its policy and caches) before the clock starts.
    asyncio.run(_load(host, port, requests, 5.0, min(args.concurrency, 8), 4 * min(args.concurrency, 8)))
    cpu_server0, cpu_client0 = _cpu_seconds([server_pid] if server_pid else []), time.process_time()
    stats, elapsed = asyncio.run(_load(host, port, requests, args.seconds, args.concurrency, args.max_requests))
    cpu_server = _cpu_seconds([server_pid] if server_pid else []) - cpu_server0
    cpu_client = time.process_time() - cpu_client0
    lat = np.array(stats.latencies) * 1000 if stats.latencies else np.array([float("nan")])
    result = {
        "phase": name, "seconds": round(elapsed, 2), "concurrency": args.concurrency,
        "requests": stats.requests, "errors": stats.errors,
        "requests_per_s": round(stats.requests / elapsed, 1),
        "orders_per_s": round(stats.requests * orders_per_request / elapsed),
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "server_cpu_cores": round(cpu_server / elapsed, 2), "client_cpu_cores": round(cpu_client / elapsed, 2),
        "server_cpu_ms_per_request": round(1000 * cpu_server / max(stats.requests, 1), 3),
    }
    # Other processes on the machine take cores too: what the server's own CPU cost allows on idle cores
    # (all cores but the client's share) tells the service's capacity apart from the machine's load.
    spare = (os.cpu_count() or 1) - result["client_cpu_cores"]
    result["cpu_bound_requests_per_s"] = round(spare * stats.requests / cpu_server, 1) if cpu_server > 0 else None
    print(f"{name:>7}: {result['requests']} requests in {result['seconds']} s = {result['requests_per_s']} req/s"
          + (f" = {result['orders_per_s']:,} orders/s" if orders_per_request > 1 else "")
          + f"; p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms; "
            f"errors {result['errors']}; CPU: server {result['server_cpu_cores']} cores, "
            f"client {result['client_cpu_cores']} cores", flush=True)
    if result["cpu_bound_requests_per_s"]:
        bound = result["cpu_bound_requests_per_s"]
        print(f"         server CPU {result['server_cpu_ms_per_request']} ms per request: idle cores would allow "
              f"~{bound:,.0f} req/s" + (f" = ~{bound * orders_per_request:,.0f} orders/s" if orders_per_request > 1
                                       else ""), flush=True)
    for sample in stats.error_samples:
        print(f"         error: {sample}")
    return result


def _start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    script = Path(sys.executable).with_name("cancel-rules")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    if args.token:
        env["CANCEL_RULES_TOKEN"] = args.token
    proc = subprocess.Popen([*command, "serve", "--port", str(port), "--workers", str(args.workers)], env=env)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:  # the port accepts connections once bound; an answer means a worker is up
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if sock.recv(12) == b"HTTP/1.1 200":
                    return proc
            time.sleep(0.1)
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit("the server did not listen within 60 s") from None
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each load run (default 30)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent callers (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="orders per batch post (default 10,000)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request cap per run")
    parser.add_argument("--phases", default="single,batch", help="single, batch (JSON), csv (default single,batch)")
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--token", help="bearer token (also given to the server this script starts)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    proc = None
    if args.url:
        parts = urlsplit(args.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
    else:
        host, port = "127.0.0.1", _free_port()
        proc = _start_server(args, port)
    try:
        frame = synthetic_orders(max(args.batch_size, 2_000), seed=11)
        records = [{k: v for k, v in row.items() if v != ""} for row in frame.to_dict("records")]
        # Single decisions of valid orders only: a 422 for a bad one would count as an error of the run.
        policy = engine.load()
        records = [r for r in records if _valid(policy, r)]
        query = f"?as_of={AS_OF.replace('+', '%2B')}"
        print(f"service on {host}:{port} ({args.workers} workers), {args.seconds:g} s per run, "
              f"concurrency {args.concurrency}, {os.cpu_count()} cores shared with this client", flush=True)
        results = []
        for phase in [p.strip() for p in args.phases.split(",") if p.strip()]:
            if phase == "single":
                requests = [_request(host, port, "/v1/decisions" + query, json.dumps(r).encode(),
                                     "application/json", args.token) for r in records[:2_000]]
                results.append(run_phase("single", host, port, requests, args, 1, proc and proc.pid))
            elif phase in ("batch", "csv"):
                requests = []
                for k in range(4):  # a few different batches, each of batch-size orders
                    rows = frame.sample(n=args.batch_size, random_state=k, replace=len(frame) < args.batch_size)
                    if phase == "csv":
                        body, ctype, accept = rows.to_csv(index=False).encode(), "text/csv", "text/csv"
                    else:
                        body = json.dumps([{k: v for k, v in r.items() if v != ""}
                                           for r in rows.to_dict("records")]).encode()
                        ctype = accept = "application/json"
                    requests.append(_request(host, port, "/v1/decisions/batch" + query, body, ctype, args.token,
                                             accept))
                results.append(run_phase(phase, host, port, requests, args, args.batch_size, proc and proc.pid))
            else:
                raise SystemExit(f"unknown phase {phase!r}")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return 0 if all(r["errors"] == 0 for r in results) else 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
