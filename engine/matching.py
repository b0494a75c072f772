"""Which rules match in a cell, as bits over the rules in firing order: one order in a few lookups, many rows at once.

A rule matches where all its conditions hold, and a condition reads one axis (two when it compares with a keyed
parameter). So per group of axes read together, one table maps each combination of their bins to the rules whose
conditions on exactly that group hold; the AND over the groups is the set of rules matched in a cell, exactly as
the condition tables (FactSpace) say, without visiting any other cell. Bit r stands for the r-th ranked rule.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from .space import FactSpace

# matched_rows counts (partial outcome, bins) pairs in a table of at most this many entries (9 bytes each),
# hashing them beyond it.
DENSE_SPAN = 1 << 22

Group = tuple[tuple[int, ...], tuple[int, ...], np.ndarray, tuple[int, ...]]


def _mix(words: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise: a sum of mixed words collides by chance only (a plain weighted sum
    of the words does whenever two rows differ in the top bits of two words)."""
    with np.errstate(over="ignore"):
        words = (words ^ (words >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        words = (words ^ (words >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return words ^ (words >> np.uint64(31))


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct row, group of each row) of a 2-D uint8 array, groups numbered in order of
    first appearance: grouped by a 64-bit hash, then checked exactly (np.unique over wide rows compares them
    bytewise, far slower)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    words = np.zeros((len(rows), -(-rows.shape[1] // 8) * 8), dtype=np.uint8)
    words[:, :rows.shape[1]] = rows
    salt = np.arange(1, words.shape[1] // 8 + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        digest = _mix(words.view(np.uint64) + salt).sum(axis=1, dtype=np.uint64)
    _, first, group = np.unique(digest, return_index=True, return_inverse=True)
    group = group.reshape(-1)
    if not (rows == rows[first[group]]).all():  # two rows share a hash: group exactly
        _, first, group = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        group = group.reshape(-1)
    order = np.argsort(first)
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return first[order], renumber[group]


class RuleBits:
    """The matched rules of cells of one fact space, from per-group tables built once."""

    def __init__(self, space: FactSpace) -> None:
        self.space = space
        self.rules = len(space.spec.rules)

    @cached_property
    def groups(self) -> tuple[Group, ...]:
        """Per group of axes read together (enum-only groups first): (axes, their sizes, the rule bits of each
        combination of their bins packed little-endian, the same bits as Python ints)."""
        space = self.space
        ranked = space.spec.ranked_rules()
        tables: dict[tuple[int, ...], np.ndarray] = {}
        for r, rule in enumerate(ranked):
            for k in range(len(rule.conditions)):
                reads, table = space._truth[(rule.id, k)]
                order = tuple(sorted(range(len(reads)), key=lambda i: reads[i]))
                axes = tuple(reads[i] for i in order)
                if axes not in tables:
                    tables[axes] = np.ones((math.prod(space.axes[a].size for a in axes), len(ranked)), dtype=bool)
                tables[axes][:, r] &= np.transpose(table, order).reshape(-1)
        groups = []
        for axes in sorted(tables, key=lambda g: (any(space.axes[a].kind == "number" for a in g), g)):
            packed = np.packbits(tables[axes], axis=1, bitorder="little")
            groups.append((axes, tuple(space.axes[a].size for a in axes), packed,
                           tuple(int.from_bytes(row.tobytes(), "little") for row in packed)))
        return tuple(groups)

    @cached_property
    def _binners(self) -> tuple[tuple[str, int | None, dict[str, int] | None, list[float]], ...]:
        return tuple((a.fact, a.not_given_bin, {v: b for b, v in enumerate(a.values)} if a.kind == "enum" else None,
                      list(a.points)) for a in self.space.axes)

    def bins_of(self, facts: Mapping[str, Any]) -> list[int]:
        """The bin of one order's normalized facts on each axis: a bisect per number, as Axis.bins_of."""
        out = []
        for fact, not_given, index, points in self._binners:
            value = facts.get(fact)
            if value is None:
                assert not_given is not None, fact  # normalize gives a value to every fact that must have one
                out.append(not_given)
            elif index is not None:
                out.append(index[value])
            else:
                pos = bisect_left(points, value)
                out.append(2 * pos + (pos < len(points) and points[pos] == value))
        return out

    def matched(self, bins: Sequence[int]) -> int:
        """The rules matched in the cell of these bins."""
        matched = (1 << self.rules) - 1
        for axes, sizes, _, masks in self.groups:
            combo = 0
            for a, size in zip(axes, sizes, strict=True):
                combo = combo * size + bins[a]
            matched &= masks[combo]
        return matched

    def matched_rows(self, bins: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(outcome of each of n rows, the matched rules of each outcome packed as in `groups`): `matched` for
        many rows, a group at a time, carrying from one group to the next only the distinct partial outcomes."""
        state = np.zeros(n, dtype=np.int64)
        code, term = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)  # reused: no fresh pages per group
        bits = np.packbits(np.ones((1, self.rules), dtype=bool), axis=1, bitorder="little")
        for axes, sizes, packed, _ in self.groups:
            np.multiply(state, len(packed), out=code)
            scale = 1
            for a, size in zip(axes[::-1], sizes[::-1], strict=True):
                code += np.multiply(bins[a], scale, out=term)
                scale *= size
            span = len(bits) * len(packed)
            if span <= DENSE_SPAN:  # the pairs met are marked in place: no hashing, no sorting
                seen = np.zeros(span, dtype=bool)
                seen[code] = True
                keys = np.flatnonzero(seen)
            else:
                import pandas as pd  # a span this wide is a batch's; one decision never imports pandas

                where, keys = pd.factorize(code)
            merged = bits[keys // len(packed)] & packed[keys % len(packed)]
            first, group = distinct_rows(merged)
            bits = merged[first]
            if span <= DENSE_SPAN:
                lookup = np.zeros(span, dtype=np.int64)
                lookup[keys] = group
                np.take(lookup, code, out=state)
            else:
                np.take(group, where, out=state)
        return state, bits

    @cached_property
    def _parking(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]:
        """Per axis: the bin FactSpace.canonical parks it in, the rules reading it (bits), the groups reading it."""
        space = self.space
        position = {rule.id: r for r, rule in enumerate(space.spec.ranked_rules())}
        readers = [0] * len(space.axes)
        for (rule_id, _), (reads, _) in space._truth.items():
            for a in reads:
                readers[a] |= 1 << position[rule_id]
        fixed = tuple(space._fixed_bin(axis) for axis in space.axes)
        groups = tuple(tuple(g for g, (axes, *_) in enumerate(self.groups) if a in axes) for a in range(len(fixed)))
        return fixed, tuple(readers), groups

    def _group_bits(self, g: int, bins: Sequence[int]) -> int:
        axes, sizes, _, masks = self.groups[g]
        combo = 0
        for a, size in zip(axes, sizes, strict=True):
            combo = combo * size + bins[a]
        return masks[combo]

    def canonical(self, bins: Sequence[int]) -> list[int]:
        """FactSpace.canonical of one cell, on its bins: the same passes (an axis that no rule reading it could
        still match is parked, axis by axis, recomputing after each, until nothing moves), as lookups of the
        per-group tables instead of numpy over arrays: a few dozen microseconds for one cell."""
        fixed, readers, reading = self._parking
        bins = list(bins)
        holds = [self._group_bits(g, bins) for g in range(len(self.groups))]
        everything = (1 << self.rules) - 1
        for _ in range(len(bins) + 1):
            moved = False
            for a, groups in enumerate(reading):
                if bins[a] == fixed[a]:
                    continue
                others = everything  # the rules whose conditions on other axes all hold
                for g, bits in enumerate(holds):
                    if g not in groups:
                        others &= bits
                if not others & readers[a]:
                    bins[a] = fixed[a]
                    moved = True
                    for g in groups:
                        holds[g] = self._group_bits(g, bins)
            if not moved:
                break
        return bins

    @staticmethod
    def as_int(packed: np.ndarray) -> int:
        """One row of packed bits as the Python int `matched` gives."""
        return int.from_bytes(packed.tobytes(), "little")

    @staticmethod
    def positions(bits: int) -> tuple[int, ...]:
        """Positions in the ranked rules of the bits set."""
        return tuple(r for r in range(bits.bit_length()) if bits >> r & 1)
