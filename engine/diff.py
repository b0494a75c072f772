"""Compare two policies cell by cell over their joint fact space, weighted by real orders when given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from .batch import cell_decisions, evaluate_frame
from .compiler import CompiledPolicy
from .decision import outcome
from .space import NOT_GIVEN, Axis, FactSpace

TRANSITION_COLUMNS = ["old_action", "old_rule", "new_action", "new_rule", "cells", "orders", "example"]


@dataclass(frozen=True)
class PolicyDiff:
    old: str
    new: str
    cells: int
    changed_cells: int
    transitions: pd.DataFrame  # one row per (old action/rule -> new action/rule) that differs
    changed: pd.DataFrame | None = None  # the orders whose decision changes, when orders were given
    orders: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "cells": self.cells, "changed_cells": self.changed_cells,
                "orders": self.orders, "changed_orders": None if self.changed is None else len(self.changed),
                "transitions": self.transitions.astype(object).where(self.transitions.notna(), None)
                .to_dict("records")}

    def __str__(self) -> str:
        lines = [f"{self.old} -> {self.new}: {self.changed_cells} of {self.cells} cells change"
                 + ("" if self.orders is None else f"; {len(self.changed)} of {self.orders} orders change")]
        for t in self.transitions.itertuples():
            orders = "" if pd.isna(t.orders) else f", {int(t.orders)} orders"
            lines.append(f"  {t.old_action} ({t.old_rule}) -> {t.new_action} ({t.new_rule}): "
                         f"{t.cells} cells{orders}, e.g. {t.example}")
        if not len(self.transitions):
            lines.append("  no decision changes")
        return "\n".join(lines)


def _joint_axes(a: FactSpace, b: FactSpace) -> tuple[Axis, ...]:
    mine = {x.fact: x for x in a.axes}
    theirs = {x.fact: x for x in b.axes}
    order = [x.fact for x in a.axes] + [x.fact for x in b.axes if x.fact not in mine]
    axes = []
    for fact in order:
        x, y = mine.get(fact), theirs.get(fact)
        if x is None or y is None:
            axes.append(x or y)
        elif x.kind == "enum":
            if x.values != y.values:
                raise ValueError(f"the policies give fact '{fact}' different values; they cannot be compared")
            axes.append(x)
        else:
            axes.append(Axis(fact, "number", points=tuple(sorted(set(x.points) | set(y.points))),
                             low=x.low, high=x.high, optional=x.optional or y.optional))
    return tuple(axes)


def _cell_values(joint: FactSpace, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Representative value of each joint cell per fact: enum codes (NOT_GIVEN) or floats (NaN)."""
    out = {}
    for axis, b in zip(joint.axes, joint.bins(ids)):
        if axis.kind == "enum":
            table = np.array([NOT_GIVEN if i == axis.not_given_bin else i for i in range(axis.size)])
        else:
            table = np.array([np.nan if (v := axis.representative(i)) is None else v for i in range(axis.size)])
        out[axis.fact] = table[b]
    return out


def _winners(compiled: CompiledPolicy, values: dict[str, np.ndarray]) -> np.ndarray:
    """Winning rule id (None: no decision) of each joint cell under one policy."""
    cells = cell_decisions(compiled)
    space = cells.space
    ids = space.cell_ids([axis.bins_of(values[axis.fact]) for axis in space.axes])
    canonical, inverse = np.unique(space.canonical(ids), return_inverse=True)
    winners = []
    for matched in cells.ask(canonical):
        rule, _ = outcome(compiled.spec, matched)
        winners.append(None if rule is None else rule.id)
    return np.array(winners, dtype=object)[inverse]


def diff(old: CompiledPolicy, new: CompiledPolicy, orders: pd.DataFrame | None, as_of: datetime) -> PolicyDiff:
    """Every change of decision between two policies, by cell and (when given) by order."""
    joint = FactSpace(old.spec, _joint_axes(cell_decisions(old).space, cell_decisions(new).space))
    ids = np.arange(joint.n_cells, dtype=np.int64)
    ids = ids[joint.nonempty(ids)]
    values = _cell_values(joint, ids)
    before, after = _winners(old, values), _winners(new, values)
    changed = before != after
    action = {r.id: r.action for r in (*old.spec.rules, *new.spec.rules)}
    rows: dict[tuple, dict[str, Any]] = {}
    for k in np.flatnonzero(changed):
        key = (action.get(before[k]), before[k], action.get(after[k]), after[k])
        if key not in rows:
            rows[key] = {"cells": 0, "orders": np.nan, "example": joint.example(int(ids[k]))}
        rows[key]["cells"] += 1
    changed_orders = None
    if orders is not None:
        a = evaluate_frame(old, orders, as_of)
        b = evaluate_frame(new, orders, as_of)
        moved = ((a["action"].fillna("") != b["action"].fillna(""))
                 | (a["rule_id"].fillna("") != b["rule_id"].fillna("")))
        changed_orders = orders[moved.to_numpy()].copy()
        for side, frame in (("old", a), ("new", b)):
            changed_orders[f"{side}_action"] = frame["action"][moved]
            changed_orders[f"{side}_rule"] = frame["rule_id"][moved]
        for key, group in changed_orders.groupby(["old_action", "old_rule", "new_action", "new_rule"], dropna=False):
            key = tuple(None if pd.isna(v) else v for v in key)
            entry = rows.setdefault(key, {"cells": 0, "orders": 0, "example": {}})
            entry["orders"] = len(group)
            if not entry["example"]:
                entry["example"] = {k: v for k, v in group.iloc[0].items() if not str(k).startswith(("old_", "new_"))}
        for entry in rows.values():
            if pd.isna(entry["orders"]):
                entry["orders"] = 0
    table = pd.DataFrame([{"old_action": k[0], "old_rule": k[1], "new_action": k[2], "new_rule": k[3], **v}
                          for k, v in rows.items()], columns=TRANSITION_COLUMNS)
    table = table.sort_values(["cells", "orders"], ascending=False, ignore_index=True)
    return PolicyDiff(old=f"{old.spec.name} {old.spec.version}", new=f"{new.spec.name} {new.spec.version}",
                      cells=len(ids), changed_cells=int(changed.sum()), transitions=table,
                      changed=changed_orders, orders=None if orders is None else len(orders))
