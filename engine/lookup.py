"""One decision from the cell table: the order's cell in a few bisects, the engine's memoized answer for its
canonical cell (asked of durable_rules once, and shared with the batch), the explanation built only when read."""

from __future__ import annotations

import threading
from collections import OrderedDict
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
from .facts import normalize, unknown_field_warnings
from .matching import RuleBits
from .model import Rule


@dataclass(frozen=True)
class CellAnswer:
    """The engine's answer for a cell: the rules it matched in firing order, the winner or why there is none."""

    matched: tuple[str, ...]
    winner: Rule | None
    error: str | None


# Cells remembered per policy, most recently used kept: each costs its bins and an answer (a few hundred bytes),
# so a table stays under about 20 MB however many distinct cells the orders fall in.
MAX_CELL_ANSWERS = 65_536


class CellLookup:
    """Per compiled policy: the answer of the cell an order falls in, from the engine's answers per canonical cell."""

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        self.cells: CellDecisions = cell_decisions(compiled)
        self.bits = RuleBits(self.cells.space)
        self.ranked = compiled.spec.ranked_rules()
        self.answer = lru_cache(maxsize=MAX_CELL_ANSWERS)(self._answer)

    def _answer(self, bins: tuple[int, ...]) -> CellAnswer | EngineError:
        """The answer of the cell of these bins: its canonical cell's, asked of the engine once per policy."""
        cell = 0
        for axis, b in zip(self.cells.space.axes, self.bits.canonical(bins), strict=True):
            cell = cell * axis.size + b
        (matched,) = self.cells.ask(np.array([cell], dtype=np.int64))
        if isinstance(matched, EngineError):
            return matched
        winner, error = outcome(self.compiled.spec, matched)
        return CellAnswer(matched, winner, error)

    def decide(self, order: Mapping[str, Any], as_of: datetime, strict: bool = False) -> Decision:
        """decision.decide's Decision for the order (same fields, same errors), its explanation pending."""
        compiled = self.compiled
        spec = compiled.spec
        facts = normalize(spec, order, as_of, strict)
        unknown = unknown_field_warnings(spec, order)
        found = self.answer(tuple(self.bits.bins_of(facts)))
        if isinstance(found, EngineError):  # a fresh one: raising the remembered one would grow its traceback
            raise EngineError(found.ruleset, found.operation, found.kind, found.code)
        matched, winner = found.matched, found.winner
        return Decision.pending(lambda: explanation(compiled, self.ranked, facts, matched, winner),
                                **answer(spec, facts, as_of, matched, winner, found.error, unknown))


# The lookups of the policies used last, keyed by their whole content (compiler.policy_digest), never by name:
# cell ids count enum values by position. Each holds at most MAX_CELL_ANSWERS answers.
MAX_LOOKUPS = 16
_lookups: OrderedDict[str, CellLookup] = OrderedDict()
_lookups_lock = threading.Lock()


def cell_lookup(compiled: CompiledPolicy) -> CellLookup:
    key = compiled.content_key
    with _lookups_lock:
        lookup = _lookups.get(key)
        if lookup is None:
            lookup = _lookups[key] = CellLookup(compiled)
            while len(_lookups) > MAX_LOOKUPS:
                _lookups.popitem(last=False)
        _lookups.move_to_end(key)
        return lookup


def decide_cells(compiled: CompiledPolicy, order: Mapping[str, Any], as_of: datetime, strict: bool = False
                 ) -> Decision:
    """The decision for one order from the cell table: decision.decide's answer, its explanation built on demand."""
    return cell_lookup(compiled).decide(order, as_of, strict)
