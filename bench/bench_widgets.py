"""Widget benchmark: Explorer update, batch grid filter on 50 k rows and WhatIf recompute on 100 k orders, this
tree beside an earlier commit's widgets (run from an extracted copy of that commit's engine/, same data, one run).

Usage: python bench/bench_widgets.py [--orders 100000] [--rows 50000] [--before 3b53128 | --before ""]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "3b53128"  # main before issue 11's workbench: the batch view's one-choice filter, the old what-if


def measure(orders: int, rows: int) -> dict[str, Any]:
    """Timings of the engine package first on sys.path (this tree's, or an extracted one's)."""
    import engine
    from engine.synthetic import AS_OF, synthetic_orders
    from engine.widgets import BatchView, Explorer, WhatIf

    policy = engine.load()
    explorer = Explorer(policy, order={"status": "Sent", "seller_reply": "No reply"}, as_of=AS_OF)
    explorer.update_seconds.clear()
    for hours in range(1, 101):
        explorer.inputs["hours_since_contact"].value = float(hours)
    out: dict[str, Any] = {"engine": str(Path(engine.__file__).parent), "explorer": list(explorer.update_seconds)}

    batch = BatchView(policy, synthetic_orders(rows, seed=5), as_of=AS_OF)
    actions = [a for a in batch.result["action"].value_counts().index[:6]]
    filter_seconds = []
    for action in actions * 2:
        start = _now()
        if hasattr(batch, "grid"):  # the grid: filter, then the page the browser asks for
            batch.grid.filters["action"].value = (action,)
            batch.grid.page(0, 10)
        else:  # the old view: one action picked, its first rows as an HTML table
            batch.pick.value = f"action={action}"
        filter_seconds.append(_now() - start)
    out["filter"] = filter_seconds

    view = WhatIf(policy, synthetic_orders(orders, seed=3))
    view.as_of.value = datetime.fromisoformat(AS_OF)
    view.recompute_seconds.clear()
    for hours in (60, 72, 36, 48, 50, 55, 66, 70, 40, 44, 61, 62):
        view.sliders["seller_reply_hours"].value = hours
    out["whatif"] = list(view.recompute_seconds)
    return out


def _now() -> float:
    import time

    return time.perf_counter()


def measure_at(ref: str, orders: int, rows: int) -> dict[str, Any]:
    """measure() against the engine/ of a commit, extracted to a temporary folder, in a child Python."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "engine.tar"
        subprocess.run(["git", "archive", "-o", str(archive), ref, "engine", "rules"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": tmp}
        done = subprocess.run([sys.executable, __file__, "--orders", str(orders), "--rows", str(rows), "--json"],
                              cwd=tmp, env=env, check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def _line(name: str, unit: str, scale: float, before: list[float] | None, after: list[float]) -> str:
    def cell(times: list[float]) -> str:
        return f"median {statistics.median(times) * scale:8.3f} {unit}, max {max(times) * scale:8.3f} {unit}"

    head = f"{name:<38} after: {cell(after)}"
    if not before:
        return head
    ratio = statistics.median(after) / statistics.median(before)
    return f"{head}   before: {cell(before)}   after/before {ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--before", default=BEFORE, help="commit to compare with ('' for none)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child's answer
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.orders, args.rows)))
        return
    before = measure_at(args.before, args.orders, args.rows) if args.before else None
    after = measure(args.orders, args.rows)
    print(f"before: {args.before or '-'}; after: this tree. Same synthetic data, same machine, one run.")
    print(_line("explorer update", "ms", 1000, before and before["explorer"], after["explorer"]))
    print(_line(f"batch filter by action, {args.rows:,} rows", "s", 1, before and before["filter"], after["filter"]))
    print(_line(f"what-if recompute, {args.orders:,} orders", "s", 1, before and before["whatif"], after["whatif"]))


if __name__ == "__main__":
    main()
