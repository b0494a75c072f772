"""Generator of realistic synthetic orders: mixed status labels and codes, timestamps, ~0.1 % bad rows.

Usage: python bench/orders.py N OUT.csv [--as-of ISO] [--seed S]   (or import `synthetic_orders`)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from engine.synthetic import AS_OF, synthetic_orders

__all__ = ["AS_OF", "main", "synthetic_orders"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("out")
    parser.add_argument("--as-of", default=AS_OF)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chunk = 1_000_000
    for start in range(0, args.n, chunk):  # in chunks, so 5 M rows need no more memory than 1 M
        part = synthetic_orders(min(chunk, args.n - start), args.as_of, args.seed + start)
        part["order_id"] = np.char.add("AE", np.arange(start, start + len(part)).astype(str))
        part.to_csv(args.out, mode="w" if start == 0 else "a", header=start == 0, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
