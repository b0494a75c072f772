"""Hostile-input benchmark (issue 9): wide CSVs and the cost of defusing spreadsheet formulas, side by side.

Prints: `cancel-rules evaluate` on a CSV with --columns columns (refused by the column limit; then allowed with
--max-columns, which reads it all); a real `cancel-rules serve` answering a CSV body that wide; and the CSV
writer on the 1 M-row output of bench/orders.py, defused against raw (--raw-csv), in process and end to end.
Usage: python bench/bench_hostile.py [--columns 100000] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from orders import AS_OF  # noqa: E402
from orders import main as write_orders  # noqa: E402

import engine  # noqa: E402
from engine.tabular import write_rows  # noqa: E402

CLI = str(Path(sys.executable).parent / "cancel-rules")


def wide_csv(columns: int) -> bytes:
    names = ["order_id", "status"] + [f"x{i}" for i in range(columns - 2)]
    return (",".join(names) + "\n" + ",".join(["W1", "Sent"] + ["v"] * (columns - 2)) + "\n").encode()


def timed(args: list[str]) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the child, exit status, last stderr line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, run.returncode, (run.stderr.strip().splitlines() or [""])[-1][:120]


def serve_and_post(body: bytes) -> tuple[float, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    proc = subprocess.Popen([CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        started = time.perf_counter()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/decisions/batch", content=body,
                              headers={"Content-Type": "text/csv"}, timeout=600)
        return time.perf_counter() - started, response.status_code
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "wide.csv"), Path(tmp, "out.csv")
        src.write_bytes(wide_csv(args.columns))
        size = src.stat().st_size / 2**20
        for extra in ([], ["--max-columns", str(args.columns)]):
            wall, cpu, code, line = timed([CLI, "evaluate", str(src), "-o", str(dst), "--as-of", AS_OF, *extra])
            print(f"evaluate, {args.columns:,} columns ({size:.1f} MB) {' '.join(extra) or '(default limit)'}: "
                  f"{wall:.2f} s wall, {cpu:.2f} s CPU, exit {code}: {line}")
        seconds, status = serve_and_post(wide_csv(args.columns))
        print(f"service, CSV body of {args.columns:,} columns: {status} in {seconds:.2f} s")

        orders = Path(tmp, "orders.csv")
        write_orders([str(args.rows), str(orders)])
        out = engine.load().evaluate(pd.read_csv(orders, dtype=str, keep_default_na=False), as_of=AS_OF)
        chunks = [out.iloc[i:i + 100_000] for i in range(0, len(out), 100_000)]
        for raw in (True, False, True, False):
            started = time.perf_counter()
            for chunk in chunks:
                write_rows(chunk, io.BytesIO(), raw)
            print(f"CSV writer, {len(out):,} rows in 100,000-row chunks, {'raw    ' if raw else 'defused'}: "
                  f"{time.perf_counter() - started:.3f} s")
        for extra in ([], ["--raw-csv"], [], ["--raw-csv"]):
            wall, cpu, code, _ = timed([CLI, "evaluate", str(orders), "-o", str(dst), "--as-of", AS_OF, *extra])
            print(f"end to end, {args.rows:,}-row CSV {' '.join(extra) or '(defused)'}: {wall:.2f} s wall, "
                  f"{cpu:.2f} s CPU, exit {code}")


if __name__ == "__main__":
    main()
