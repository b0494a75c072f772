"""Widget benchmark: Explorer update time (median over 100 changes) and WhatIf recompute on 100 k orders.

Usage: python bench/bench_widgets.py [--orders 100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from orders import AS_OF, synthetic_orders  # noqa: E402

import engine  # noqa: E402
from engine.widgets import Explorer, WhatIf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    policy = engine.load()
    explorer = Explorer(policy, order={"status": "Sent", "seller_reply": "No reply"}, as_of=AS_OF)
    explorer.update_seconds.clear()
    for hours in range(1, 101):
        explorer.inputs["hours_since_contact"].value = float(hours)
    times = list(explorer.update_seconds)
    print(f"explorer update: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {len(times)} changes")
    view = WhatIf(policy, synthetic_orders(args.orders, seed=3))
    view.as_of.value = datetime.fromisoformat(AS_OF)
    view.recompute_seconds.clear()
    for hours in (60, 72, 36, 48, 50, 55, 66, 70, 40, 44, 61, 62):
        view.sliders["seller_reply_hours"].value = hours
    times = list(view.recompute_seconds)
    print(f"what-if recompute on {args.orders:,} orders: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)} changes")


if __name__ == "__main__":
    main()
