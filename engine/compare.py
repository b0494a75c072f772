"""Compare two policies cell by cell over their joint fact space, weighted by real orders when given."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from . import regions
from .batch import cell_decisions, evaluate_frame
from .compiler import CompiledPolicy
from .decision import outcome
from .errors import ComparisonError, EngineError
from .frames import INVALID, NOT_GIVEN
from .model import PolicySpec
from .space import Axis, FactSpace

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
                 + ("" if self.changed is None else f"; {len(self.changed)} of {self.orders} orders change")]
        for t in self.transitions.itertuples():
            orders = "" if pd.isna(t.orders) else f", {int(t.orders)} orders"
            lines.append(f"  {t.old_action} ({t.old_rule}) -> {t.new_action} ({t.new_rule}): "
                         f"{t.cells} cells{orders}, e.g. {t.example}")
        if not len(self.transitions):
            lines.append("  no decision changes")
        return "\n".join(lines)


def _joint_axes(a: FactSpace, b: FactSpace) -> tuple[Axis, ...]:
    """Axes that cut both policies' cells: enum values of both (a's order, then b's others), numbers cut at both
    policies' thresholds (and at their ranges' ends where these differ), 'not given' if either allows it."""
    mine = {x.fact: x for x in a.axes}
    theirs = {x.fact: x for x in b.axes}
    order = [x.fact for x in a.axes] + [x.fact for x in b.axes if x.fact not in mine]
    axes: list[Axis] = []
    for fact in order:
        x, y = mine.get(fact), theirs.get(fact)
        if x is None or y is None:
            only = x or y
            assert only is not None  # each fact of `order` is an axis of one of the two
            axes.append(only)
        elif x.kind != y.kind:
            raise ComparisonError(fact, (x.kind, y.kind))
        elif x.kind == "enum":
            axes.append(Axis(fact, "enum", values=x.values + tuple(v for v in y.values if v not in x.values),
                             optional=x.optional or y.optional))
        else:
            points = set(x.points) | set(y.points)
            if (x.low, x.high) != (y.low, y.high):  # a value inside one range only is decided by one policy only
                points |= {p for p in (x.low, x.high, y.low, y.high) if math.isfinite(p)}
            axes.append(Axis(fact, "number", points=tuple(sorted(points)), low=min(x.low, y.low),
                             high=max(x.high, y.high), optional=x.optional or y.optional))
    return tuple(axes)


def _cell_values(joint: FactSpace, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Representative value of each joint cell per fact: enum codes (NOT_GIVEN) or floats (NaN)."""
    out = {}
    for axis, b in zip(joint.axes, joint.bins(ids), strict=True):
        if axis.kind == "enum":
            table = np.array([NOT_GIVEN if i == axis.not_given_bin else i for i in range(axis.size)])
        else:
            table = np.array([np.nan if (v := axis.representative(i)) is None else v for i in range(axis.size)])
        out[axis.fact] = table[b]
    return out


def _own_values(spec: PolicySpec, joint: FactSpace, values: dict[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The joint cells' values as one policy reads them (its own enum codes, its defaults), and the cells it
    refuses, as it would refuse such an order: a value it does not know, a number outside its range, a required
    fact not given."""
    own: dict[str, np.ndarray] = {}
    bad = np.zeros(len(next(iter(values.values()))) if values else 0, dtype=bool)
    for axis in joint.axes:
        fact = spec.facts.get(axis.fact)
        if fact is None:  # a fact this policy does not declare: an unknown field to it, ignored
            continue
        if fact.type != axis.kind:
            raise ComparisonError(axis.fact, (fact.type, axis.kind))
        given = values[axis.fact]
        if axis.kind == "enum":
            index = {value: i for i, value in enumerate(fact.values)}
            not_given = NOT_GIVEN if fact.optional else index.get(fact.default, INVALID)
            table = np.array([index.get(value, INVALID) for value in axis.values] + [not_given], dtype=np.int64)
            codes = table[given]  # NOT_GIVEN (-1) picks the last entry
            bad |= codes == INVALID
            own[axis.fact] = codes
        else:
            number = given.copy()
            blank = np.isnan(number)
            if fact.default is not None:
                number[blank] = float(fact.default)
            elif fact.required:
                bad |= blank
            with np.errstate(invalid="ignore"):
                if fact.min is not None:
                    bad |= number < fact.min
                if fact.max is not None:
                    bad |= number > fact.max
            own[axis.fact] = number
    return own, bad


def _winners(compiled: CompiledPolicy, joint: FactSpace, values: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Winning rule id of each joint cell under one policy (None: no decision, or a cell it refuses), and where
    durable_rules could not answer (past one of its limits: no winner either)."""
    own, bad = _own_values(compiled.spec, joint, values)
    cells = cell_decisions(compiled)
    space = cells.space
    out = np.full(len(bad), None, dtype=object)
    failed = np.zeros(len(bad), dtype=bool)
    ok = np.flatnonzero(~bad)
    if not len(ok):
        return out, failed
    ids = space.cell_ids([axis.bins_of(own[axis.fact][ok]) for axis in space.axes])
    canonical, inverse = np.unique(space.canonical(ids), return_inverse=True)
    winners, errors = [], []
    for matched in cells.ask(canonical):
        rule = None if isinstance(matched, EngineError) else outcome(compiled.spec, matched)[0]
        winners.append(None if rule is None else rule.id)
        errors.append(isinstance(matched, EngineError))
    out[ok] = np.array(winners, dtype=object)[inverse]
    failed[ok] = np.array(errors, dtype=bool)[inverse]
    return out, failed


def _joint_rules(compiled: CompiledPolicy, joint: FactSpace) -> list[list[regions.Condition]]:
    """The policy's rules (in firing order) as conditions over the joint axes. A cell the policy refuses (a value
    it does not know, a number outside its range, a required fact not given) has no winner there, like a cell no
    rule matches: each rule gets one more condition per axis with such bins, true where the bin is accepted."""
    spec = compiled.spec
    space = cell_decisions(compiled).space
    own_axis = {axis.fact: k for k, axis in enumerate(space.axes)}
    joint_axis = {axis.fact: j for j, axis in enumerate(joint.axes)}
    own_bin: dict[int, np.ndarray] = {}  # own axis -> its bin for each bin of the joint axis
    accepted: list[regions.Condition] = []
    for j, axis in enumerate(joint.axes):
        if axis.fact not in spec.facts:
            continue
        alone = FactSpace(spec, (axis,))  # each joint bin as a cell of its own, read as the policy reads it
        own, bad = _own_values(spec, alone, _cell_values(alone, np.arange(axis.size)))
        if bad.any():
            accepted.append(((j,), ~bad))
        if axis.fact in own_axis:
            k = own_axis[axis.fact]
            values = own[axis.fact] if axis.kind == "number" else np.where(bad, 0, own[axis.fact])
            own_bin[k] = np.where(bad, 0, space.axes[k].bins_of(values))
    return [[(tuple(joint_axis[space.axes[x].fact] for x in reads), table[np.ix_(*(own_bin[x] for x in reads))])
             for reads, table in conditions] + accepted for conditions in regions.space_rules(space)]


def _table_winners(spec: PolicySpec, found: regions.Regions, first: int) -> np.ndarray:
    """Winning rule id of each region under one policy by the condition tables (its rules are numbered from
    `first` in the regions' outcomes)."""
    ranked = spec.ranked_rules()
    winners = []
    for matched in found.outcomes:
        mine = [ranked[r - first] for r in matched if first <= r < first + len(ranked)]
        winners.append(mine[0].id if mine and (spec.hit_policy == "first" or len(mine) == 1) else None)
    return np.array(winners, dtype=object)[found.outcome]


def policy_diff(old: CompiledPolicy, new: CompiledPolicy, orders: pd.DataFrame | None, as_of: datetime
                ) -> PolicyDiff:
    """Every change of decision between two policies, by cell and (when given) by order.

    The joint space is cut into regions where both policies' matched rules are constant (engine.regions, over
    both policies' rules); durable_rules decides each region's representative cell under each policy."""
    joint = FactSpace(old.spec, _joint_axes(cell_decisions(old).space, cell_decisions(new).space))
    old_rules, new_rules = _joint_rules(old, joint), _joint_rules(new, joint)
    found = regions.build(joint.axes, old_rules + new_rules)
    ids = found.cell_ids(found.representatives())
    values = _cell_values(joint, ids)
    (before, old_failed), (after, new_failed) = _winners(old, joint, values), _winners(new, joint, values)
    for compiled, got, failed, first in ((old, before, old_failed, 0), (new, after, new_failed, len(old_rules))):
        expected = _table_winners(compiled.spec, found, first)
        wrong = np.flatnonzero((expected != got) & ~failed)  # the engine and the tables must tell the same story
        if len(wrong):
            k = wrong[0]
            raise EngineError(compiled.ruleset, "diff", f"cell {joint.describe(int(ids[k]))}: engine {got[k]}, "
                                                        f"tables {expected[k]}")
    # A decision is an action and a rule: a rule that keeps its id may change its action.
    old_action = np.array([None if r is None else old.spec.rule(r).action for r in before], dtype=object)
    new_action = np.array([None if r is None else new.spec.rule(r).action for r in after], dtype=object)
    changed = (before != after) | (old_action != new_action)
    rows: dict[tuple, dict[str, Any]] = {}
    for k in np.flatnonzero(changed):
        key = (old_action[k], before[k], new_action[k], after[k])
        if key not in rows:
            rows[key] = {"cells": 0, "orders": np.nan, "example": joint.example(int(ids[k]))}
        rows[key]["cells"] += int(found.weights[k])
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
            transition = tuple(None if pd.isna(v) else v for v in key)
            entry = rows.setdefault(transition, {"cells": 0, "orders": 0, "example": {}})
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
                      cells=found.cells, changed_cells=int(found.weights[changed].sum()), transitions=table,
                      changed=changed_orders, orders=None if orders is None else len(orders))
