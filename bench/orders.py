"""Generator of realistic synthetic orders: mixed status labels and codes, timestamps, ~0.1 % bad rows.

Usage: python bench/orders.py N OUT.csv [--as-of ISO] [--seed S]   (or import `synthetic_orders`)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from engine.synthetic import AS_OF, synthetic_orders

__all__ = ["AS_OF", "main", "synthetic_orders", "typed_facts"]


def typed_facts(text: pd.DataFrame) -> pd.DataFrame:
    """Orders as an in-memory frame holds them: elapsed times as numbers (to AS_OF), enums as text."""
    as_of = pd.Timestamp(AS_OF)
    enums = [c for c in ("order_id", "status", "seller_reply", "payment_method", "country", "category")
             if c in text.columns]
    frame = text[enums].copy()
    for fact, stamp, unit in (("hours_since_contact", "contacted_at", 3600), ("hours_since_payment", "paid_at", 3600),
                              ("days_since_refund", "refund_started_at", 86400)):
        parsed = pd.to_datetime(text[stamp].replace("", None), utc=True, format="ISO8601", errors="coerce")
        frame[fact] = ((as_of - parsed).dt.total_seconds() / unit).to_numpy(dtype=float, na_value=np.nan)
    frame["seller_rating"] = pd.to_numeric(text["seller_rating"], errors="coerce")
    return frame


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
