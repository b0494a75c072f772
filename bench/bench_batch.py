"""Batch benchmark, all figures measured side by side in one run (these machines are noisy).

Prints: in-memory orders/s for the cell path and the per-row path and their ratio; end-to-end
`cancel-rules evaluate` time on a 1 M-row CSV over pandas' own read+write of the same data; peak RSS of
streaming 5 M rows vs 1 M rows; verify time.  Usage: python bench/bench_batch.py [--rows 1000000] [--big 5000000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from orders import AS_OF, synthetic_orders  # noqa: E402
from orders import main as write_orders

import engine  # noqa: E402

CLI = str(Path(sys.executable).parent / "cancel-rules")


def in_memory_frame(n: int) -> pd.DataFrame:
    """Orders as an in-memory frame holds them: elapsed times as numbers, enums as text labels."""
    text = synthetic_orders(n, seed=1)
    as_of = pd.Timestamp(AS_OF)
    frame = text[["order_id", "status", "seller_reply", "payment_method"]].copy()
    for fact, stamp, unit in (("hours_since_contact", "contacted_at", 3600), ("hours_since_payment", "paid_at", 3600),
                              ("days_since_refund", "refund_started_at", 86400)):
        parsed = pd.to_datetime(text[stamp].replace("", None), utc=True, format="ISO8601", errors="coerce")
        frame[fact] = ((as_of - parsed).dt.total_seconds() / unit).to_numpy(dtype=float, na_value=np.nan)
    frame["seller_rating"] = pd.to_numeric(text["seller_rating"], errors="coerce")
    return frame


def best(func, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Peak RSS of a child, polled (a fork's rusage would count the parent's pages copied before exec)."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, child.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed with status {proc.returncode}")
    return peak / 2**20, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--row-sample", type=int, default=20_000, help="rows for the per-row path")
    parser.add_argument("--big", type=int, default=5_000_000, help="rows for the streaming RSS run (0: skip)")
    args = parser.parse_args()
    policy = engine.load()

    verify_s = best(lambda: engine.load().verify(), repeat=1)  # first verify: the engine asked every cell
    print(f"verify (bundled policy, first run): {verify_s:.3f} s; "
          f"{policy.verify().cells} cells, {policy.verify().canonical_cells} distinct")

    frame = in_memory_frame(args.rows)
    sample = frame.head(args.row_sample)
    policy.evaluate(frame.head(1000), as_of=AS_OF)  # warm the cell cache as a long-lived process would
    cells_s = best(lambda: policy.evaluate(frame, as_of=AS_OF))
    rows_s = best(lambda: policy.evaluate(sample, as_of=AS_OF, method="rows"), repeat=1)
    cell_rate, row_rate = len(frame) / cells_s, len(sample) / rows_s
    print(f"in memory, {len(frame):,} rows: cell path {cell_rate:,.0f} orders/s ({cells_s:.3f} s); "
          f"per-row path {row_rate:,.0f} orders/s ({len(sample):,} rows); ratio {cell_rate / row_rate:.1f}x")
    text = synthetic_orders(args.rows, seed=2)
    text_s = best(lambda: policy.evaluate(text, as_of=AS_OF), repeat=2)
    print(f"in memory, text columns with ISO timestamps (as read from CSV): {len(text) / text_s:,.0f} orders/s")

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "orders.csv"), Path(tmp, "out.csv")
        write_orders([str(args.rows), str(src)])
        started = time.perf_counter()
        run = subprocess.run([CLI, "evaluate", str(src), "-o", str(dst), "--as-of", AS_OF],
                             capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"cancel-rules evaluate failed ({run.returncode}): {run.stderr[-2000:]}")
        cli_s = time.perf_counter() - started
        out = pd.read_csv(dst, dtype=str, keep_default_na=False)
        started = time.perf_counter()
        pd.read_csv(src, dtype=str, keep_default_na=False)
        out.to_csv(Path(tmp, "baseline.csv"), index=False)
        base_s = time.perf_counter() - started
        print(f"end to end, {args.rows:,}-row CSV: cancel-rules evaluate {cli_s:.2f} s (process start included); "
              f"pandas read+write {base_s:.2f} s; ratio {cli_s / base_s:.2f}x")
        del out
        rss_1m, t_1m = peak_rss_mb([CLI, "evaluate", str(src), "-o", str(dst), "--as-of", AS_OF])
        print(f"streaming {args.rows:,} rows: peak RSS {rss_1m:.0f} MB, {t_1m:.1f} s")
        if args.big:
            big = Path(tmp, "big.csv")
            write_orders([str(args.big), str(big)])
            rss_big, t_big = peak_rss_mb([CLI, "evaluate", str(big), "-o", str(dst), "--as-of", AS_OF])
            print(f"streaming {args.big:,} rows: peak RSS {rss_big:.0f} MB, {t_big:.1f} s "
                  f"({args.big / t_big:,.0f} orders/s); RSS ratio {rss_big / rss_1m:.2f}")


if __name__ == "__main__":
    main()
