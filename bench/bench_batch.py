"""Batch benchmark, all figures measured side by side in one run (these machines are noisy).

Prints: in-memory orders/s for the cell path and the per-row path and their ratio, and for a text frame as read
from CSV over the typed facts; end-to-end `cancel-rules evaluate` time on a 1 M-row CSV over pyarrow's (and pandas')
read+write of the same data (text columns, as the run reads them; and with pyarrow's type inference), wall and
CPU; start-up of `--help`, `decide` and `engine.load().decide`; peak RSS of streaming 5 M rows vs 1 M rows; verify
time. With --before DIR (a copy of another version's `engine/`, e.g. `git archive main engine rules | tar -x -C
DIR`: its default policy is read from DIR/rules), the end-to-end and start-up figures of that version are printed
next to this one's.
Usage: python bench/bench_batch.py [--rows 1000000] [--big 5000000] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from orders import AS_OF, synthetic_orders, typed_facts  # noqa: E402
from orders import main as write_orders

import engine  # noqa: E402

CLI = str(Path(sys.executable).parent / "cancel-rules")


def cli(before: str | None) -> list[str]:
    """The command running this version's CLI, or the one whose engine/ is in the folder before."""
    return [CLI] if before is None else [sys.executable, "-c", "import sys; from engine.cli import main; "
                                                              "sys.exit(main())"]


def timed_run(args: list[str], before: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run, which must succeed."""
    env = {**os.environ, "PYTHONPATH": before} if before else None
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Elsewhere than the worktree: `python -c` puts the working folder first on sys.path.
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=before or None)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({run.returncode}): {run.stderr[-2000:]}")
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def arrow_read_write(src: Path, out: Path, sink: Path) -> tuple[float, float]:
    """(wall, CPU) seconds for pyarrow to read src as text columns and write the table out holds (read untimed)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def text_columns(path: Path) -> pacsv.ConvertOptions:
        with path.open(encoding="utf-8-sig") as handle:
            names = handle.readline().rstrip("\n").split(",")
        return pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False)

    output = pacsv.read_csv(out, convert_options=text_columns(out))
    wall, cpu = time.perf_counter(), time.process_time()
    pacsv.read_csv(src, convert_options=text_columns(src))
    pacsv.write_csv(output, sink, write_options=pacsv.WriteOptions(quoting_style="needed"))
    return time.perf_counter() - wall, time.process_time() - cpu


def arrow_typed_read_write(src: Path, out: Path, sink: Path) -> tuple[float, float]:
    """(wall, CPU) seconds for pyarrow to read src with its own type inference (timestamps and numbers parsed) and
    write out, also read with inference (read untimed): the baseline of a pipeline that parses its input."""
    import pyarrow.csv as pacsv

    output = pacsv.read_csv(out)
    wall, cpu = time.perf_counter(), time.process_time()
    pacsv.read_csv(src)
    pacsv.write_csv(output, sink, write_options=pacsv.WriteOptions(quoting_style="needed"))
    return time.perf_counter() - wall, time.process_time() - cpu


def in_memory_frame(n: int) -> pd.DataFrame:
    """Orders as an in-memory frame holds them: elapsed times as numbers, enums as text labels."""
    return typed_facts(synthetic_orders(n, seed=1))


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


ORDER = '{"order_id": "A", "status": "shipped"}'  # JSON, and a Python dict literal too
STARTUPS = {  # what a user starts: the CLI's help, one decision through the CLI, one through the Python API
    "--help": lambda before: [*cli(before), "--help"],
    "decide": lambda before: [*cli(before), "decide", "--json", ORDER, "--as-of", AS_OF],
    "engine.load().decide": lambda before: [
        sys.executable, "-c", f"import engine; print(engine.load().decide({ORDER}, as_of={AS_OF!r}).to_json())"],
}


def print_startup(versions: list[tuple[str, str | None]], repeat: int = 5) -> None:
    """Best wall and best CPU seconds of each start-up, the versions taking turns (the machine's load drifts)."""
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(repeat):
        for name, before in versions:
            for what, command in STARTUPS.items():
                runs.setdefault((name, what), []).append(timed_run(command(before), before))
    if sys.flags.dont_write_bytecode:  # the children inherit PYTHONDONTWRITEBYTECODE
        print("start-up: no .pyc is written here (PYTHONDONTWRITEBYTECODE): modules without one compile at each start")
    for name, _ in versions:
        print(f"start-up, {name}: " + "; ".join(
            f"{what} {min(w for w, _ in runs[name, what]):.3f} s wall, {min(c for _, c in runs[name, what]):.3f} s CPU"
            for what in STARTUPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--row-sample", type=int, default=20_000, help="rows for the per-row path")
    parser.add_argument("--big", type=int, default=5_000_000, help="rows for the streaming RSS run (0: skip)")
    parser.add_argument("--before", metavar="DIR", help="folder holding another version's engine/ to compare")
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
    text = synthetic_orders(args.rows, seed=2)  # text columns, str dtype: what the CSV readers give
    text_s = best(lambda: policy.evaluate(text, as_of=AS_OF), repeat=2)
    print(f"in memory, text columns with ISO timestamps (as read from CSV): {len(text) / text_s:,.0f} orders/s; "
          f"text / typed facts {cells_s / text_s:.2f}")

    versions = [("this version", None)] + ([("before", args.before)] if args.before else [])
    print_startup(versions)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "orders.csv"), Path(tmp, "out.csv")
        write_orders([str(args.rows), str(src)])
        for name, before in versions:
            cli_wall, cli_cpu = min(timed_run(cli(before) + ["evaluate", str(src), "-o", str(dst), "--as-of",
                                                             AS_OF], before) for _ in range(2))
            base_wall, base_cpu = arrow_read_write(src, dst, Path(tmp, "baseline.csv"))
            typed_wall, typed_cpu = arrow_typed_read_write(src, dst, Path(tmp, "baseline.csv"))
            print(f"end to end, {args.rows:,}-row CSV, {name}: cancel-rules evaluate {cli_wall:.2f} s wall, "
                  f"{cli_cpu:.2f} s CPU (process start included); pyarrow read+write of the same {base_wall:.2f} s "
                  f"wall, {base_cpu:.2f} s CPU; ratio {cli_wall / base_wall:.2f}x wall, {cli_cpu / base_cpu:.2f}x CPU; "
                  f"pyarrow with its type inference {typed_wall:.2f} s wall, {typed_cpu:.2f} s CPU; ratio "
                  f"{cli_wall / typed_wall:.2f}x wall, {cli_cpu / typed_cpu:.2f}x CPU")
        out = pd.read_csv(dst, dtype=str, keep_default_na=False)
        started = time.perf_counter()
        pd.read_csv(src, dtype=str, keep_default_na=False)
        out.to_csv(Path(tmp, "baseline.csv"), index=False)
        base_s = time.perf_counter() - started
        print(f"end to end: pandas read+write of the same {base_s:.2f} s (the former baseline)")
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
