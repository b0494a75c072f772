"""Rule coverage of a batch: every rule of the policy in firing order with how many orders it decided."""

from __future__ import annotations

import pandas as pd

from .model import PolicySpec

COVERAGE_COLUMNS = ("rule_id", "action", "priority", "orders", "share")


def rule_coverage(spec: PolicySpec, rule_ids: pd.Series) -> pd.DataFrame:
    """One row per rule in firing order (rule_id, action, priority, orders, share of all rows in %), rules that
    decided no order included with 0: those are the ones to look at."""
    counts = rule_ids.dropna().astype(str).value_counts()
    total = max(len(rule_ids), 1)
    ranked = spec.ranked_rules()
    hits = [int(counts.get(r.id, 0)) for r in ranked]
    return pd.DataFrame({
        "rule_id": [r.id for r in ranked],
        "action": [r.action for r in ranked],
        "priority": [r.priority for r in ranked],
        "orders": pd.Series(hits, dtype="int64"),
        "share": [round(100 * h / total, 1) for h in hits],
    }, columns=list(COVERAGE_COLUMNS))
