"""One decision from the cell table: the order's cell in a few bisects, the engine's memoized answer for its
canonical cell (asked of durable_rules once, and shared with the batch), the explanation built only when read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np

from .batch import CellDecisions, cell_decisions
from .compiler import CompiledPolicy
from .decision import Decision, answer, explanation, outcome
from .errors import EngineError
from .facts import input_fields, normalize, unknown_field_warnings
from .matching import RuleBits
from .memo import LRU
from .model import Rule


@dataclass(frozen=True)
class CellAnswer:
    """The engine's answer for a cell: the rules it matched in firing order, the winner or why there is none."""

    matched: tuple[str, ...]
    winner: Rule | None
    error: str | None


# Cells remembered per policy, most recently used kept: each costs its bins and an answer (a few hundred bytes),
# so the memo stays under about 20 MB however many distinct cells the orders fall in.
MAX_CELL_ANSWERS = 65_536
# A fact space of at most DENSE_CELLS cells gets a table of every cell's answer (4 bytes a cell, 4 MB at most; built
# in about 0.2 s per million cells) once DENSE_AFTER distinct cells were met: then no order meets a new cell.
DENSE_CELLS = 1 << 20
DENSE_AFTER = 256
BLOCK = 1 << 16  # cells a step of the table's construction works on (numpy arrays of about 10 MB)

Found = CellAnswer | EngineError


class CellLookup:
    """Per compiled policy: the answer of the cell an order falls in, from the engine's answers per canonical cell."""

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        self.cells: CellDecisions = cell_decisions(compiled)
        self.bits: RuleBits = self.cells.bits  # built once per policy, shared with the batch
        self.ranked = compiled.spec.ranked_rules()
        self.fields = frozenset(input_fields(compiled.spec))
        self.radix = self.cells.space.sizes
        self.answer = lru_cache(maxsize=MAX_CELL_ANSWERS)(self._answer)
        self.misses = 0
        self.table: tuple[np.ndarray, list[Found]] | None = None  # (index in the answers of each cell, answers)

    def find(self, bins: list[int]) -> Found:
        """The answer of the cell of these bins."""
        table = self.table
        if table is None:
            return self.answer(tuple(bins))
        cell = 0
        for b, size in zip(bins, self.radix, strict=True):
            cell = cell * size + b
        return table[1][table[0][cell]]

    def _answer(self, bins: tuple[int, ...]) -> Found:
        """The answer of one cell: its canonical cell's, asked of the engine once per policy."""
        self.misses += 1
        if self.misses == DENSE_AFTER and self.cells.space.n_cells <= DENSE_CELLS:
            self.table = self.dense_table()
        cell = 0
        for b, size in zip(self.bits.canonical(bins), self.radix, strict=True):
            cell = cell * size + b
        return self._resolve(cell, self.bits.matched(bins))

    def _resolve(self, canonical: int, view: int) -> Found:
        """The engine's answer for a canonical cell, checked against what the conditions say in a cell of its class
        (`view`, the rules they match as bits): the lazy explanation then checks only the rules it shows."""
        (matched,) = self.cells.ask(np.array([canonical], dtype=np.int64))
        if isinstance(matched, EngineError):
            return matched
        explained = tuple(self.ranked[r].id for r in self.bits.positions(view))
        if explained != matched:
            return EngineError(self.compiled.ruleset, "explanation",
                               f"engine matched {matched}, conditions say {explained}")
        winner, error = outcome(self.compiled.spec, matched)
        return CellAnswer(matched, winner, error)

    def dense_table(self) -> tuple[np.ndarray, list[Found]]:
        """Every cell's answer: the cells of the space a block at a time, each mapped to its canonical cell and the
        rules its conditions match (vectorized), one answer per distinct pair of them. Empty cells (no value lies
        in them) get -1: no order falls there."""
        space = self.cells.space
        index = np.full(space.n_cells, -1, dtype=np.int32)
        answers: list[Found] = []
        known: dict[tuple[int, int], int] = {}
        for start in range(0, space.n_cells, BLOCK):
            ids = np.arange(start, min(start + BLOCK, space.n_cells), dtype=np.int64)
            ids = ids[space.nonempty(ids)]
            state, bits = self.bits.matched_rows(space.bins(ids), len(ids))
            pairs, codes = np.unique(space.canonical(ids) * len(bits) + state, return_inverse=True)
            slots = np.empty(len(pairs), dtype=np.int32)
            for k, pair in enumerate(pairs.tolist()):
                canonical, view = divmod(pair, len(bits))
                key = (canonical, self.bits.as_int(bits[view]))
                if key not in known:
                    known[key] = len(answers)
                    answers.append(self._resolve(*key))
                slots[k] = known[key]
            index[ids] = slots[codes]
        return index, answers

    def decide(self, order: Mapping[str, Any], as_of: datetime, strict: bool = False) -> Decision:
        """decision.decide's Decision for the order (same fields, same errors), its explanation pending."""
        compiled = self.compiled
        spec = compiled.spec
        facts = normalize(spec, order, as_of, strict)
        unknown = () if all(name in self.fields for name in order) else unknown_field_warnings(spec, order)
        found = self.find(self.bits.bins_of(facts))
        if isinstance(found, EngineError):  # a fresh one: raising the remembered one would grow its traceback
            raise EngineError(found.ruleset, found.operation, found.kind, found.code)
        matched, winner = found.matched, found.winner
        return Decision.pending(lambda: explanation(compiled, self.ranked, facts, matched, winner, shown_only=True),
                                **answer(spec, facts, as_of, matched, winner, found.error, unknown))


# The lookups of the policies used last, keyed by their whole content (compiler.policy_digest), never by name:
# cell ids count enum values by position. Each holds at most MAX_CELL_ANSWERS answers.
MAX_LOOKUPS = 16
_lookups: LRU[str, CellLookup] = LRU(MAX_LOOKUPS)


def cell_lookup(compiled: CompiledPolicy) -> CellLookup:
    return _lookups.get_or_make(compiled.content_key, lambda: CellLookup(compiled))


def decide_cells(compiled: CompiledPolicy, order: Mapping[str, Any], as_of: datetime, strict: bool = False
                 ) -> Decision:
    """The decision for one order from the cell table: decision.decide's answer, its explanation built on demand."""
    return cell_lookup(compiled).decide(order, as_of, strict)
