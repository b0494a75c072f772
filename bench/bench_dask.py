"""Dask benchmark, in one run: the same orders CSV through `cancel-rules evaluate` (local streaming path) and
`cancel-rules evaluate --dask` (a LocalCluster of 2 worker processes), with rows/s, wall time and peak RSS:
of the local process, and of the client and of each Dask worker process (polled with psutil).
The two outputs are compared byte for byte.

Usage: python bench/bench_dask.py [--rows 10000000] [--address tcp://host:8786] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from orders import AS_OF  # noqa: E402
from orders import main as write_orders  # noqa: E402

CLI = str(Path(sys.executable).parent / "cancel-rules")


def run_polled(args: list[str]) -> dict:
    """Run a command; poll the RSS of it and of every descendant (Dask workers are spawned children)."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(proc.pid)
    peaks: dict[int, int] = {}
    kinds: dict[int, str] = {}
    while proc.poll() is None:
        try:
            procs = [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                rss = p.memory_info().rss
                if p.pid not in kinds:
                    cmd = " ".join(p.cmdline())
                    kinds[p.pid] = ("main" if p.pid == proc.pid else "worker" if "spawn_main" in cmd
                                    else "helper")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            peaks[p.pid] = max(peaks.get(p.pid, 0), rss)
        time.sleep(0.05)
    err = proc.stderr.read()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed with status {proc.returncode}:\n{err}")
    mb = {pid: peak / 2**20 for pid, peak in peaks.items()}
    return {"seconds": seconds, "stderr": err,
            "main_mb": mb.get(proc.pid, 0.0),
            "workers_mb": sorted((v for pid, v in mb.items() if kinds.get(pid) == "worker"), reverse=True)}


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**24), b""):
            h.update(block)
    return h.hexdigest()


def summary_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if " orders in " in line), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--address", default=None, help="a running scheduler instead of a LocalCluster")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(args.keep or temp)
        folder.mkdir(parents=True, exist_ok=True)
        src = folder / "orders.csv"
        if not src.exists():
            started = time.perf_counter()
            write_orders([str(args.rows), str(src), "--as-of", AS_OF])
            print(f"generated {args.rows:,} orders ({src.stat().st_size / 2**20:,.0f} MB) in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        n = args.rows

        local_out, dask_out = folder / "local.csv", folder / "dask.csv"
        local = run_polled([CLI, "evaluate", str(src), "-o", str(local_out), "--as-of", AS_OF])
        print(f"local streaming path: {local['seconds']:.1f} s ({n / local['seconds']:,.0f} rows/s, process start "
              f"included); peak RSS {local['main_mb']:,.0f} MB\n  {summary_line(local['stderr'])}", flush=True)

        dask = run_polled([CLI, "evaluate", str(src), "-o", str(dask_out), "--dask", *(
            [args.address] if args.address else []), "--as-of", AS_OF])
        where = f"scheduler {args.address}" if args.address else "LocalCluster, 2 worker processes x 1 thread"
        workers = ", ".join(f"{mb:,.0f} MB" for mb in dask["workers_mb"]) or "(remote: not measured)"
        print(f"dask ({where}): {dask['seconds']:.1f} s ({n / dask['seconds']:,.0f} rows/s, process and cluster "
              f"start included); peak RSS per worker {workers}; client {dask['main_mb']:,.0f} MB\n"
              f"  {summary_line(dask['stderr'])}\n  {dask['stderr'].splitlines()[0]}", flush=True)
        same = digest(local_out) == digest(dask_out)
        print(f"outputs identical: {'yes' if same else 'NO'}; dask/local speed ratio "
              f"{local['seconds'] / dask['seconds']:.2f}x; {os.cpu_count()} CPUs, load average at the end "
              f"{os.getloadavg()[0]:.2f} (other processes share the machine)")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
