"""A fact space cut into regions of constant outcome, built top-down without visiting every cell.

A region is a box of cells: per axis, a class of bins that no rule still possible there tells apart. The axes
are taken one at a time (enums first, those whose bins rule out most rules first). Each partial box keeps the
rules still possible in it (every condition whose axes are all assigned holds there), and the next axis is cut
only where the conditions of those rules on it differ: bins that every such condition treats alike form one
class (one class for all bins: the axis is free in that box). When every axis is assigned, the rules still
possible are exactly the rules matched in every cell of the box, so the outcome is constant on a region and
its weight (the product of its classes' sizes) is its number of cells.

Work and memory follow what the rules distinguish, not the number of cells: boxes are expanded depth-first in
blocks of at most BLOCK, so only one block per axis is alive at a time, and the regions themselves are stored
as one class handle per axis.

A condition reads one axis, or two when it compares with a keyed parameter (it reads the key's axis too). It
is evaluated at the later of its axes in the order; at the earlier one it is pending, and bins whose truth rows
over the later axis differ are kept apart, so that a class's representative stands for all its bins.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import SpaceTooLargeError
from .space import Axis, FactSpace

BLOCK = 8192  # partial boxes expanded at once; a block costs about BLOCK × (rules + 16 × axes) bytes per axis

Condition = tuple[tuple[int, ...], np.ndarray]  # (axes it reads, its truth table over their bins)


@functools.lru_cache(maxsize=1024)
def nonempty_bins(axis: Axis) -> np.ndarray:
    """Which bins of an axis hold a value within the fact's declared range ('not given' always does)."""
    return np.array([b == axis.not_given_bin or axis.representative(b) is not None for b in range(axis.size)])


def parking_bin(axis: Axis) -> int:
    """The bin a free axis takes in a region's representative: the one FactSpace.canonical parks it in, so
    representatives are canonical cells wherever an axis is irrelevant."""
    return FactSpace._fixed_bin(axis)


def space_rules(space: FactSpace) -> list[list[Condition]]:
    """Each rule's conditions as condition tables over the space's axes, rules in firing order."""
    return [[space._truth[(rule.id, k)] for k in range(len(rule.conditions))] for rule in space.spec.ranked_rules()]


def axis_order(axes: Sequence[Axis], rules: Sequence[Sequence[Condition]]) -> tuple[int, ...]:
    """Enums before numbers; within each kind, the axes whose bins rule out most rules first (a bin rules a rule
    out where one of its single-axis conditions fails there), so that boxes shed rules early."""
    score = np.zeros(len(axes))
    for conditions in rules:
        for reads, table in conditions:
            if len(reads) == 1:
                score[reads[0]] += 1.0 - table[nonempty_bins(axes[reads[0]])].mean()
    return tuple(sorted(range(len(axes)), key=lambda a: (axes[a].kind != "enum", -score[a], a)))


class _Classes:
    """Classes of bins met so far, interned: a handle per (axis, bins)."""

    def __init__(self, axes: Sequence[Axis]) -> None:
        self.axes = axes
        self.bins: list[np.ndarray] = []
        self.representative: list[int] = []
        self._index: dict[tuple[int, bytes], int] = {}

    def handle(self, axis: int, bins: np.ndarray) -> int:
        key = (axis, bins.tobytes())
        if key not in self._index:
            parked = parking_bin(self.axes[axis])
            self._index[key] = len(self.bins)
            self.bins.append(bins)
            self.representative.append(parked if parked in bins else int(bins[0]))
        return self._index[key]


@dataclass
class _Cut:
    """How to cut one axis. Each rule with a condition on it has, per combination of bins of the earlier axes
    its conditions here also read (its context), a vector: the truth over this axis's bins of its conditions
    evaluated here (`passes`), and the rows telling bins apart for it (`signatures`: that truth, and the rows of
    its pending conditions)."""

    axis: int
    bins: np.ndarray  # the non-empty bins
    rules: np.ndarray  # rules with a condition on this axis
    contexts: list[tuple[np.ndarray, tuple[int, ...], tuple[int, ...], np.ndarray]]  # (positions in `rules`,
    # context axes, their sizes, vector id per rule and context combination)
    passes: np.ndarray  # (vectors, axis size) bool
    signatures: list[np.ndarray]  # per vector, (rows, non-empty bins)
    partitions: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def of(cls, axes: Sequence[Axis], rules: Sequence[Sequence[Condition]], order: tuple[int, ...], d: int
           ) -> _Cut:
        a = order[d]
        earlier = set(order[:d + 1])
        bins = np.flatnonzero(nonempty_bins(axes[a]))
        vectors: dict[bytes, int] = {}
        passes: list[np.ndarray] = []
        signatures: list[np.ndarray] = []
        reading: list[int] = []
        by_context: dict[tuple[int, ...], tuple[list[int], list[np.ndarray]]] = {}
        for r, conditions in enumerate(rules):
            here = [(reads, table) for reads, table in conditions if a in reads]
            if not here:
                continue
            if any(len(reads) > 2 for reads, _ in here):
                raise ValueError("a condition reads more than two facts: regions handle one or two")
            evaluated = [(reads, table) for reads, table in here if set(reads) <= earlier]
            pending = []
            for reads, table in here:
                later = [x for x in reads if x not in earlier]
                if later:  # bins of this axis whose rows over the later axis differ must stay apart
                    rows = np.moveaxis(table, reads.index(a), 0)[np.ix_(bins, nonempty_bins(axes[later[0]]))]
                    pending.append(np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1))
            context = tuple(sorted({x for reads, _ in evaluated for x in reads if x != a}))
            sizes = tuple(axes[x].size for x in context)
            ids = []
            for combo in itertools.product(*(range(n) for n in sizes)):
                at = dict(zip(context, combo, strict=True))
                passed = np.ones(axes[a].size, dtype=bool)
                for reads, table in evaluated:
                    passed &= table[tuple(slice(None) if x == a else at[x] for x in reads)]
                signature = np.vstack([passed[bins].astype(np.int64), *pending])
                key = signature.tobytes()
                if key not in vectors:
                    vectors[key] = len(passes)
                    passes.append(passed)
                    signatures.append(signature)
                ids.append(vectors[key])
            positions, tables = by_context.setdefault(context, ([], []))
            positions.append(len(reading))
            tables.append(np.array(ids, dtype=np.int32))
            reading.append(r)
        contexts = [(np.array(positions), context, tuple(axes[x].size for x in context), np.vstack(tables))
                    for context, (positions, tables) in by_context.items()]
        return cls(a, bins, np.array(reading, dtype=np.int64), contexts,
                   np.array(passes, dtype=bool).reshape(len(passes), axes[a].size), signatures)

    def vector_ids(self, bins: np.ndarray) -> np.ndarray:
        """(boxes, rules reading this axis): each rule's vector in each box, from the box's context bins."""
        out = np.zeros((len(bins), len(self.rules)), dtype=np.int32)
        for positions, context, sizes, table in self.contexts:
            combo = np.zeros(len(bins), dtype=np.int64)
            for x, size in zip(context, sizes, strict=True):
                combo = combo * size + bins[:, x]
            out[:, positions] = table[:, combo].T
        return out

    def partition(self, vector_ids: np.ndarray, classes: _Classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(representative bin, size, handle) of each class of non-empty bins that these vectors do not tell
        apart; memoized by the set of vectors (boxes that share it are cut alike)."""
        key = vector_ids.tobytes()
        if key not in self.partitions:
            if len(vector_ids):
                stacked = np.vstack([self.signatures[v] for v in vector_ids])
                label = np.unique(stacked.T, axis=0, return_inverse=True)[1].reshape(-1)
            else:
                label = np.zeros(len(self.bins), dtype=np.int64)
            handles = np.array([classes.handle(self.axis, self.bins[label == k])
                                for k in range(int(np.max(label)) + 1)])
            self.partitions[key] = (np.array([classes.representative[h] for h in handles], dtype=np.int64),
                                    np.array([len(classes.bins[h]) for h in handles], dtype=np.int64), handles)
        return self.partitions[key]


def _row_groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct row, group of each row) of a 2-D uint8 array: grouped by a 64-bit hash,
    then checked exactly (np.unique over wide rows compares them bytewise, far slower)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    words = np.zeros((len(rows), -(-rows.shape[1] // 8) * 8), dtype=np.uint8)
    words[:, :rows.shape[1]] = rows
    words = words.view(np.uint64)
    mix = np.random.default_rng(words.shape[1]).integers(1, 2**63, size=words.shape[1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        digest = (words * (mix | np.uint64(1))).sum(axis=1, dtype=np.uint64)
    _, first, group = np.unique(digest, return_index=True, return_inverse=True)
    group = group.reshape(-1)
    if not (rows == rows[first[group]]).all():  # two rows share a hash: group exactly
        _, first, group = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        group = group.reshape(-1)
    return first, group


@dataclass
class Regions:
    """The regions of a fact space: per region a class handle per axis (columns in `axes` order), its weight
    (cells) and its outcome (an index into `outcomes`, each the indices of the rules matched there)."""

    axes: tuple[Axis, ...]
    order: tuple[int, ...]
    handles: np.ndarray  # (regions, axes) int32
    weights: np.ndarray  # (regions,) int64
    outcome: np.ndarray  # (regions,) int64
    outcomes: list[tuple[int, ...]]
    class_bins: list[np.ndarray]
    class_representative: np.ndarray
    _words: dict[int, str] = field(default_factory=dict, repr=False)  # class handle -> describe_bins of it

    def __len__(self) -> int:
        return len(self.weights)

    @property
    def cells(self) -> int:
        return int(self.weights.sum(dtype=np.int64))

    def representatives(self) -> np.ndarray:
        """(regions, axes) bins of each region's representative cell."""
        return self.class_representative[self.handles]

    def cell_ids(self, bins: np.ndarray) -> np.ndarray:
        """Cell id of each row of bins, as FactSpace numbers cells (mixed radix in axis order)."""
        ids = np.zeros(len(bins), dtype=np.int64)
        for a, axis in enumerate(self.axes):
            ids = ids * axis.size + bins[:, a]
        return ids

    def cells_of(self, i: int) -> np.ndarray:
        """Every cell id of region i (it enumerates them: for tests)."""
        ids = np.zeros(1, dtype=np.int64)
        for a, axis in enumerate(self.axes):
            ids = (ids[:, None] * axis.size + self.class_bins[int(self.handles[i, a])][None, :]).reshape(-1)
        return ids

    def describe(self, i: int) -> dict[str, str]:
        """Region i in words, per fact: 'any' where the axis is free, else its values or intervals."""
        out = {}
        for a, axis in enumerate(self.axes):
            handle = int(self.handles[i, a])
            if handle not in self._words:
                self._words[handle] = describe_bins(axis, self.class_bins[handle])
            out[axis.fact] = self._words[handle]
        return out

    def sample(self, n: int, rng: np.random.Generator, by: str = "cells") -> tuple[np.ndarray, np.ndarray]:
        """(region, bins) of n random cells: uniform over all cells (by='cells'), or a uniform region and a
        uniform cell of it (by='regions')."""
        if by == "cells":
            cumulative = np.cumsum(self.weights)
            region = np.searchsorted(cumulative, rng.integers(0, int(cumulative[-1]), size=n), side="right")
        else:
            region = rng.integers(0, len(self), size=n)
        bins = np.zeros((n, len(self.axes)), dtype=np.int64)
        for a in range(len(self.axes)):
            for j, handle in enumerate(self.handles[region, a]):
                members = self.class_bins[int(handle)]
                bins[j, a] = members[rng.integers(0, len(members))]
        return region, bins


def build(axes: Sequence[Axis], rules: Sequence[Sequence[Condition]], order: tuple[int, ...] | None = None,
          block: int = BLOCK) -> Regions:
    """The regions of the space of `axes` under `rules` (each a list of conditions: it matches where all hold),
    expanded depth-first in blocks of at most `block` partial boxes. Outcomes list rule indices ascending."""
    axes = tuple(axes)
    total = math.prod(axis.size for axis in axes)
    if total >= 2**63:
        raise SpaceTooLargeError(total)
    order = axis_order(axes, rules) if order is None else tuple(order)
    builder = _Builder([_Cut.of(axes, rules, order, d) for d in range(len(order))], _Classes(axes), block)
    if all(nonempty_bins(axis).any() for axis in axes):
        builder.walk(0, np.array([[parking_bin(axis) for axis in axes]], dtype=np.int64),
                     np.zeros((1, len(axes)), dtype=np.int64), np.ones(1, dtype=np.int64),
                     np.ones((1, len(rules)), dtype=bool), np.arange(len(rules)))
    found = builder.found
    if found:
        handles, weights, outcome = (np.concatenate([f[k] for f in found]) for k in range(3))
    else:
        handles, weights, outcome = np.zeros((0, len(axes)), np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return Regions(axes, order, handles, weights, outcome, list(builder.outcome_ids), builder.classes.bins,
                   np.array(builder.classes.representative, dtype=np.int64))


@dataclass
class _Builder:
    """The depth-first expansion of partial boxes, axis by axis (one cut per depth), into finished regions."""

    cuts: list[_Cut]
    classes: _Classes
    block: int
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    outcome_ids: dict[tuple[int, ...], int] = field(default_factory=dict)

    def emit(self, handles: np.ndarray, weight: np.ndarray, possible: np.ndarray, columns: np.ndarray) -> None:
        first, group = _row_groups(np.packbits(possible, axis=1))
        ids = np.array([self.outcome_ids.setdefault(tuple(columns[possible[i]].tolist()), len(self.outcome_ids))
                        for i in first], dtype=np.int64)
        self.found.append((handles.astype(np.int32), weight, ids[group]))

    def walk(self, depth: int, bins: np.ndarray, handles: np.ndarray, weight: np.ndarray, possible: np.ndarray,
             columns: np.ndarray) -> None:
        alive = possible.any(axis=0)
        if 2 * alive.sum() < len(columns):  # carry only the rules still possible somewhere in the block
            possible, columns = possible[:, alive], columns[alive]
        if depth == len(self.cuts):
            self.emit(handles, weight, possible, columns)
            return
        cut = self.cuts[depth]
        here = np.flatnonzero(np.isin(cut.rules, columns))  # rules of this cut still carried
        at = np.searchsorted(columns, cut.rules[here])
        vids = cut.vector_ids(bins)[:, here]
        live = possible[:, at]
        member = np.zeros((len(bins), len(cut.passes)), dtype=bool)
        rows, cols = np.nonzero(live)
        member[rows, vids[rows, cols]] = True
        first, set_of = _row_groups(np.packbits(member, axis=1))
        parts = [cut.partition(np.flatnonzero(member[i]), self.classes) for i in first]
        n_classes = np.array([len(p[0]) for p in parts])
        start = np.cumsum(n_classes) - n_classes
        rep, size, handle = (np.concatenate([p[k] for p in parts]) for k in range(3))
        children = n_classes[set_of]
        ends = np.cumsum(children)
        lo = 0
        while lo < len(bins):  # parents in groups of at most `block` children (a parent has at most one axis's)
            before = ends[lo - 1] if lo else 0
            hi = max(int(np.searchsorted(ends, before + self.block, side="right")), lo + 1)
            parent = np.repeat(np.arange(lo, hi), children[lo:hi])
            first_child = np.repeat(ends[lo:hi] - children[lo:hi] - before, children[lo:hi])
            flat = start[set_of[parent]] + np.arange(len(parent)) - first_child  # which class of the parent's
            child_bins = bins[parent]
            child_bins[:, cut.axis] = rep[flat]
            child_handles = handles[parent]
            child_handles[:, cut.axis] = handle[flat]
            child_possible = possible[parent]
            child_possible[:, at] = live[parent] & cut.passes[vids[parent], rep[flat][:, None]]
            self.walk(depth + 1, child_bins, child_handles, weight[parent] * size[flat], child_possible, columns)
            lo = hi


def of_space(space: FactSpace) -> Regions:
    """The regions of a policy's fact space; outcome rule indices are positions in spec.ranked_rules()."""
    return build(space.axes, space_rules(space))


def describe_bins(axis: Axis, bins: np.ndarray) -> str:
    """A class of bins in words: 'any' when it holds every non-empty bin (and more than one), else its enum
    values, or its numbers as maximal intervals (bins empty within the fact's range do not break one), then
    'not given'."""
    nonempty = nonempty_bins(axis)
    members = sorted(int(b) for b in bins)
    if len(members) > 1 and len(members) == int(nonempty.sum()):
        return "any"
    given = [b for b in members if b != axis.not_given_bin]
    if axis.kind == "enum":
        parts = [axis.values[b] for b in given]
    else:
        runs: list[list[int]] = []
        for b in given:
            if runs and not nonempty[runs[-1][-1] + 1:b].any():
                runs[-1].append(b)
            else:
                runs.append([b])
        parts = [_interval(axis, run[0], run[-1]) for run in runs]
    if axis.not_given_bin in members:
        parts.append("not given")
    return " or ".join(parts)


def _interval(axis: Axis, first: int, last: int) -> str:
    """The numbers of bins first..last of a number axis within the fact's range: '= p' or an interval."""
    pos, is_point = divmod(first, 2)
    if first == last and is_point:
        return f"= {axis.points[pos]:g}"
    if is_point:
        low, low_in = axis.points[pos], True
    else:
        low, low_in = (axis.points[pos - 1], False) if pos > 0 else (-math.inf, False)
    if axis.low > low:
        low, low_in = axis.low, True
    pos, is_point = divmod(last, 2)
    if is_point:
        high, high_in = axis.points[pos], True
    else:
        high, high_in = (axis.points[pos], False) if pos < len(axis.points) else (math.inf, False)
    if axis.high < high:
        high, high_in = axis.high, True
    return f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
