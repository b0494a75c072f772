"""The policy's finite fact space: axes cut at the rules' thresholds, cells, and their equivalence classes.

Every condition compares one fact with constants, so cutting each number at every threshold (as a point,
plus the open intervals between) and taking enums as they are makes each rule's truth constant inside a
cell. A cell's decision is then a pure function of the cell. Many cells share a decision for a visible
reason (once `status` is `disputed`, the hours since contact matter to no rule that can still match), so
each cell is mapped to a canonical cell in which such irrelevant axes are set to a fixed bin: the engine
is asked once per canonical cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from .model import NOT_GIVEN, KeyedParameter, ParamRef, PolicySpec
from .operators import OPERATORS, check


@dataclass(frozen=True)
class Axis:
    """One fact cut into bins: enum values (then 'not given'), or number points and open intervals."""

    fact: str
    kind: Literal["enum", "number"]
    values: tuple[str, ...] = ()  # enum codes
    points: tuple[float, ...] = ()  # sorted thresholds
    low: float = -math.inf  # the fact's declared minimum (inclusive)
    high: float = math.inf  # the fact's declared maximum (inclusive)
    optional: bool = False

    @property
    def size(self) -> int:
        base = len(self.values) if self.kind == "enum" else 2 * len(self.points) + 1
        return base + (1 if self.optional else 0)

    @property
    def not_given_bin(self) -> int | None:
        return self.size - 1 if self.optional else None

    def representative(self, b: int) -> Any:
        """A value inside bin b (None: not given, or the bin is empty given the fact's range)."""
        if b == self.not_given_bin:
            return None
        if self.kind == "enum":
            return self.values[b]
        pos, is_point = divmod(b, 2)
        if is_point:
            return self.points[pos] if self.low <= self.points[pos] <= self.high else None
        lo = self.points[pos - 1] if pos > 0 else -math.inf
        hi = self.points[pos] if pos < len(self.points) else math.inf
        # The open interval (lo, hi) within the declared range [low, high].
        a, a_in = (self.low, True) if self.low > lo else (lo, False)
        b_, b_in = (self.high, True) if self.high < hi else (hi, False)
        if a > b_ or (a == b_ and not (a_in and b_in)):
            return None
        if math.isinf(a) and math.isinf(b_):
            return 0.0
        if math.isinf(a):
            return b_ - 1.0
        if math.isinf(b_):
            return a + 1.0
        mid = (a + b_) / 2
        if a < mid < b_:
            return mid
        # a and b_ are neighbouring doubles: only an included end lies in the bin, else nothing does
        return a if a_in else b_ if b_in else None

    def describe(self, b: int) -> str:
        if b == self.not_given_bin:
            return "not given"
        if self.kind == "enum":
            return self.values[b]
        pos, is_point = divmod(b, 2)
        if is_point:
            return f"= {self.points[pos]:g}"
        lo = f"{self.points[pos - 1]:g}" if pos > 0 else f"{self.low:g}"
        hi = f"{self.points[pos]:g}" if pos < len(self.points) else f"{self.high:g}"
        return f"({lo}, {hi})" if pos > 0 else f"[{lo}, {hi})"

    def bins_of(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value: enum codes (NOT_GIVEN for missing), or floats (NaN for missing)."""
        if self.kind == "enum":
            out = values.astype(np.int64, copy=True)
            if self.not_given_bin is not None:
                out[out == NOT_GIVEN] = self.not_given_bin
            return out
        points = np.asarray(self.points, dtype=np.float64)
        # Bin 2k + 1 is the point k, bin 2k the open interval below it: the count of points <= v plus the count
        # of points < v. A few points are counted by comparing (3x faster than a binary search per value); more,
        # by a binary search (bin 2 * position, plus one where the value is the point found).
        if len(points) <= _FEW_POINTS:
            out = np.zeros(len(values), dtype=np.int64)
            for point in points.tolist():
                np.add(out, (values >= point).view(np.int8), out=out, casting="unsafe")
                np.add(out, (values > point).view(np.int8), out=out, casting="unsafe")
        else:
            out = np.searchsorted(points, values, side="left")
            hit = np.append(points, np.nan)[out] == values  # NaN past the last point equals nothing
            out *= 2  # in place: a batch's first arrays are fresh pages, each one paid for
            out += hit
        missing = np.isnan(values)
        if missing.any():  # NaN compares false to every point; a binary search puts it past the last
            out[missing] = 2 * len(points) if self.not_given_bin is None else self.not_given_bin
        return out.astype(np.int64, copy=False)


_FEW_POINTS = 16


def _cut_points(spec: PolicySpec, fact: str) -> list[float]:
    """Every constant a rule compares `fact` with (each keyed parameter's values too): where its axis is cut."""
    cuts: set[float] = set()
    for rule in spec.rules:
        for cond in rule.conditions:
            if cond.fact != fact or not OPERATORS[cond.op].cuts:
                continue
            for item in cond.value if isinstance(cond.value, tuple) else (cond.value,):
                param = spec.parameters[item.name] if isinstance(item, ParamRef) else None
                if isinstance(param, KeyedParameter):
                    cuts.update(float(v) for v in param.values.values())
                    if param.default is not None:
                        cuts.add(float(param.default))
                else:
                    cuts.add(float(spec.resolve(item, {})))
    return sorted(cuts)


def build_axes(spec: PolicySpec) -> tuple[Axis, ...]:
    """The axes of every fact a condition (or a keyed parameter) reads, in the policy's fact order."""
    used = spec.read_facts()
    axes = []
    for name, fact in spec.facts.items():
        if name not in used:
            continue
        if fact.type == "enum":
            axes.append(Axis(name, "enum", values=fact.values, optional=fact.optional))
        else:
            low = -math.inf if fact.min is None else float(fact.min)
            high = math.inf if fact.max is None else float(fact.max)
            axes.append(Axis(name, "number", points=tuple(_cut_points(spec, name)), low=low, high=high,
                             optional=fact.optional))
    return tuple(axes)


_Table = tuple[tuple[int, ...], np.ndarray]  # a condition's truth: the axes it reads, its table over their bins


@dataclass(frozen=True)
class FactSpace:
    """All cells of a policy (mixed-radix ids over the axes) and the canonical cell of each."""

    spec: PolicySpec
    axes: tuple[Axis, ...]

    @classmethod
    def of(cls, spec: PolicySpec) -> FactSpace:
        return cls(spec, build_axes(spec))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def n_cells(self) -> int:
        return math.prod(self.sizes)  # a Python int: exact however many axes (an int64 product wraps)

    @property
    def id_dtype(self) -> np.dtype:
        """int64 while every cell id fits in it, else object (Python ints: exact, slower): an int64 id would wrap
        past 2^63 cells and give rows another cell's decision."""
        return np.dtype(np.int64) if self.n_cells <= 2 ** 63 else np.dtype(object)

    def cell_ids(self, bins: list[np.ndarray]) -> np.ndarray:
        """Cell id of each row from its per-axis bins (same order as `axes`)."""
        ids = np.zeros(len(bins[0]) if bins else 0, dtype=self.id_dtype)
        for axis, b in zip(self.axes, bins, strict=True):
            ids = ids * axis.size + b
        return ids

    def bins(self, ids: np.ndarray) -> list[np.ndarray]:
        out = []
        ids = np.asarray(ids, dtype=self.id_dtype)
        for axis in reversed(self.axes):
            ids, b = ids // axis.size, ids % axis.size  # np.divmod has no object loop
            out.append(b.astype(np.int64))  # bins index tables: small, and never object
        return out[::-1]

    def facts_of(self, cell: int, bins: list[int] | None = None) -> dict[str, Any] | None:
        """Representative facts of one cell (None if the cell is empty given the facts' ranges); `bins`, the cell's
        bins when the caller has them, spares working them out of the id."""
        facts: dict[str, Any] = {}
        if bins is None:
            bins = [int(b[0]) for b in self.bins(np.array([cell], dtype=self.id_dtype))]
        for axis, b in zip(self.axes, bins, strict=True):
            value = axis.representative(b)
            if value is None and b != axis.not_given_bin:
                return None
            if value is not None:
                facts[axis.fact] = value
        on_axes = {axis.fact for axis in self.axes}
        for name, fact in self.spec.facts.items():  # required facts no rule reads still need a valid value
            if name in on_axes or not fact.required:
                continue
            if fact.type == "string":
                facts[name] = f"cell-{cell}"
            elif fact.type == "enum":
                facts[name] = fact.values[0]
            else:
                facts[name] = float(fact.min if fact.min is not None else min(0, fact.max or 0))
        return facts

    def example(self, cell: int) -> dict[str, Any]:
        """A cell's representative facts as an order, its id first (for reports)."""
        facts = self.facts_of(cell) or {}
        return {"order_id": f"cell-{cell}", **{k: v for k, v in facts.items() if k != "order_id"}}

    def describe(self, cell: int) -> dict[str, str]:
        bins = self.bins(np.array([cell], dtype=self.id_dtype))
        return {a.fact: a.describe(int(b[0])) for a, b in zip(self.axes, bins, strict=True)}

    @cached_property
    def _truth(self) -> dict[tuple[str, int], tuple[tuple[int, ...], np.ndarray]]:
        """(rule id, condition index) -> (axes it reads, truth table over those axes' bins)."""
        index = {a.fact: i for i, a in enumerate(self.axes)}
        tables = {}
        seen: dict[tuple[str, str, Any], tuple[tuple[int, ...], np.ndarray]] = {}
        for rule in self.spec.rules:
            for k, cond in enumerate(rule.conditions):
                # Rules repeat conditions (a status, a payment method): each is tabulated once, its position aside.
                same = (cond.fact, cond.op, cond.value)
                if same in seen:
                    tables[(rule.id, k)] = seen[same]
                    continue
                reads = [index[cond.fact]]
                keyed = self.spec.keyed_parameter(cond)
                if keyed is not None and index[keyed.by] not in reads:
                    reads.append(index[keyed.by])
                shape = tuple(self.axes[i].size for i in reads)
                table = np.zeros(shape, dtype=bool)
                for combo in np.ndindex(*shape):
                    facts = {self.axes[i].fact: self.axes[i].representative(b)
                             for i, b in zip(reads, combo, strict=True)}
                    facts = {f: v for f, v in facts.items() if v is not None}
                    table[combo] = check(self.spec, cond, facts).passed
                table.flags.writeable = False  # shared by every rule with this condition
                tables[(rule.id, k)] = seen[same] = (tuple(reads), table)
        return tables

    def _condition_truth(self, rule_id: str, k: int, bins: list[np.ndarray]) -> np.ndarray:
        reads, table = self._truth[(rule_id, k)]
        return table[tuple(bins[i] for i in reads)]

    def canonical(self, ids: np.ndarray) -> np.ndarray:
        """Canonical cell of each cell: axes no still-possible rule reads are parked in a fixed bin.

        Each pass keeps every cell's matched rules; parking one axis can make an earlier one irrelevant, so
        passes repeat until nothing moves."""
        for _ in range(len(self.axes) + 1):
            parked = self._park(ids)
            if np.array_equal(parked, ids):
                break
            ids = parked
        return ids

    @cached_property
    def _relevance(self) -> tuple[list[set[tuple[int, ...]]], list[tuple[int, ...]], list[_Table]]:
        """For _park: per axis, the distinct sets of other conditions of the rules that read it; per axis, the
        conditions reading it; and the distinct conditions (axes read, truth table). Rules share many conditions
        (a country, a status), so each is evaluated once per pass, not once per rule and axis."""
        distinct: dict[tuple, int] = {}
        conditions: list[_Table] = []
        others: list[set[tuple[int, ...]]] = [set() for _ in self.axes]
        reading: list[set[int]] = [set() for _ in self.axes]
        for rule in self.spec.rules:
            keys = []
            for k in range(len(rule.conditions)):
                reads, table = self._truth[(rule.id, k)]
                key = distinct.setdefault((reads, table.shape, table.tobytes()), len(conditions))
                if key == len(conditions):
                    conditions.append((reads, table))
                keys.append(key)
                for a in reads:
                    reading[a].add(key)
            for a in {a for key in keys for a in conditions[key][0]}:
                others[a].add(tuple(sorted({key for key in keys if a not in conditions[key][0]})))
        return others, [tuple(sorted(r)) for r in reading], conditions

    def _park(self, ids: np.ndarray) -> np.ndarray:
        """One pass, axis by axis, recomputing after each so that two conditions failing each other's rule
        are never both erased. An axis stays where some rule reading it has all its other conditions true."""
        bins = self.bins(ids)
        others, reading, conditions = self._relevance
        truth: dict[int, np.ndarray] = {}
        where: dict[int, np.ndarray] = {}

        def holds(key: int) -> np.ndarray:
            if key not in truth:
                reads, table = conditions[key]
                truth[key] = table[tuple(bins[i] for i in reads)]
            return truth[key]

        def rows(key: int) -> np.ndarray:
            if key not in where:
                where[key] = np.flatnonzero(holds(key))
            return where[key]

        for a, axis in enumerate(self.axes):
            relevant = np.zeros(len(ids), dtype=bool)
            for keys in others[a]:
                if not keys:  # a rule reading only this axis: it matters everywhere
                    relevant[:] = True
                    break
                first = min(keys, key=lambda key: len(rows(key)))  # the rarest first: the rest on its rows only
                found = rows(first)
                for key in keys:
                    if key != first and len(found):
                        found = found[holds(key)[found]]
                relevant[found] = True
            bins[a] = np.where(relevant, bins[a], self._fixed_bin(axis))
            for key in reading[a]:  # their truth moved with the axis
                truth.pop(key, None)
                where.pop(key, None)
        return self.cell_ids(bins)

    @staticmethod
    def _fixed_bin(axis: Axis) -> int:
        """Where an irrelevant axis is parked: 'not given', else its first bin that holds a value."""
        if axis.not_given_bin is not None:
            return axis.not_given_bin
        return next(b for b in range(axis.size) if axis.representative(b) is not None)

    def matches(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Rule id -> boolean array: does the rule's condition set hold in each cell (Python's view)."""
        bins = self.bins(ids)
        out = {}
        for rule in self.spec.rules:
            ok = np.ones(len(ids), dtype=bool)
            for k in range(len(rule.conditions)):
                ok &= self._condition_truth(rule.id, k, bins)
            out[rule.id] = ok
        return out

    def nonempty(self, ids: np.ndarray) -> np.ndarray:
        """Cells whose every bin holds a value within the facts' declared ranges."""
        bins = self.bins(ids)
        ok = np.ones(len(ids), dtype=bool)
        for axis, b in zip(self.axes, bins, strict=True):
            has = np.array([axis.representative(i) is not None or i == axis.not_given_bin
                            for i in range(axis.size)])
            ok &= has[b]
        return ok

