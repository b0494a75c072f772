"""Synthetic orders as a CSV export holds them: mixed labels and codes, timestamps, ~0.1 % bad rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

AS_OF = "2026-11-26T12:00:00+00:00"
STATUSES = {  # spelling as exports show them -> weight
    "Awaiting payment": 4, "awaiting_payment": 1, "Placed": 1, "Payment being verified": 2,
    "Awaiting shipment": 10, "Pending shipping": 3, "Processing": 2, "awaiting_shipment": 3,
    "Awaiting cancellation": 3, "Sent": 12, "In Transit": 8, "shipped": 4, "Awaiting delivery": 3,
    "Delivered": 6, "Completed": 3, "Dispute": 2, "In issue": 1, "Closed": 8, "cancelled": 3, "Canceled": 1,
}
REPLIES = {"": 20, "not_contacted": 5, "No reply": 15, "no_reply": 10, "Full refund": 8, "partial_refund": 5,
           "Continue order": 5, "Refused": 6, "Declined": 2}
METHODS = {"Credit card": 30, "card": 10, "PayPal": 12, "AliExpress balance": 8, "wallet": 4,
           "Bank transfer": 3, "Boleto": 3, "WebMoney": 2, "COD": 2, "": 6}
BAD = {"status": ["Shipped?", "lost", ""], "hours_since_contact": ["-5", "soon", "NaN"],
       "contacted_at": ["yesterday", "2026-13-01T00:00:00"], "seller_rating": ["120", "great"]}


def _pick(rng: np.random.Generator, table: dict[str, int], n: int) -> np.ndarray:
    keys = np.array(list(table), dtype=object)
    weights = np.array(list(table.values()), dtype=float)
    return keys[rng.choice(len(keys), n, p=weights / weights.sum())]


def _stamps(rng: np.random.Generator, as_of: datetime, hours: np.ndarray, present: np.ndarray) -> np.ndarray:
    base = np.datetime64(as_of.replace(tzinfo=None), "s")
    stamps = (base - (hours * 3600).astype("timedelta64[s]")).astype(str)
    out = np.char.add(stamps.astype("U19"), "Z").astype(object)
    out[~present] = ""
    return out


def synthetic_orders(n: int, as_of: str = AS_OF, seed: int = 0, bad_rate: float = 0.001) -> pd.DataFrame:
    """n orders as text columns, the way a CSV export holds them."""
    rng = np.random.default_rng(seed)
    when = datetime.fromisoformat(as_of).astimezone(UTC)
    contact_hours = rng.gamma(2.0, 20.0, n)
    contacted = rng.random(n) < 0.55
    direct_hours = rng.random(n) < 0.15  # some exports carry the hours instead of the timestamp
    df = pd.DataFrame({
        "order_id": np.char.add("AE", np.arange(10_000_000, 10_000_000 + n).astype(str)).astype(object),
        "status": _pick(rng, STATUSES, n),
        "seller_reply": _pick(rng, REPLIES, n),
        "contacted_at": _stamps(rng, when, contact_hours, contacted & ~direct_hours),
        "hours_since_contact": np.where(contacted & direct_hours, np.round(contact_hours, 1).astype(str), ""),
        "paid_at": _stamps(rng, when, rng.gamma(1.5, 30.0, n), rng.random(n) < 0.9),
        "refund_started_at": _stamps(rng, when, rng.gamma(2.0, 200.0, n), rng.random(n) < 0.25),
        "payment_method": _pick(rng, METHODS, n),
        "seller_rating": np.where(rng.random(n) < 0.7, np.round(rng.beta(20, 1.5, n) * 100, 1).astype(str), ""),
    })
    bad_rows = np.flatnonzero(rng.random(n) < bad_rate)
    for i in bad_rows.tolist():
        column = list(BAD)[i % len(BAD)]
        df.at[i, column] = BAD[column][i % len(BAD[column])]
        if column == "contacted_at":
            df.at[i, "hours_since_contact"] = ""
    return df
