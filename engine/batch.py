"""Evaluate a DataFrame of orders: vectorized normalization, one engine call per distinct canonical cell.

Rows are never dropped or reordered: each input row gets action, rule_id, message, error, policy_version.
Bad rows get the per-row reference path's exact error text (they are rare, so it is asked per row).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .compiler import MATCH_CHUNK, CompiledPolicy
from .decision import decide_row, match, outcome
from .errors import EngineError, InputError, OrderError, UsageError
from .facts import input_fields, normalize, unknown_fields
from .matching import RuleBits
from .memo import LRU
from .model import Method, PolicySpec
from .space import FactSpace
from .text import alias_key

# pandas and pyarrow (under frames and tabular) are imported by the functions working on frames: one decision
# (engine.lookup) reads CellDecisions without them.
if TYPE_CHECKING:
    import pandas as pd

    from .decided import Decided


def resolve_columns(spec: PolicySpec, columns: list[str], source: str = "input") -> dict[str, str]:
    """Field name -> input column, matching header case and surrounding spaces; checks required facts."""
    from .tabular import OUTPUT_COLUMNS

    by_key: dict[str, str] = {}
    for col in columns:
        by_key.setdefault(alias_key(str(col)), col)
    found = {name: by_key[alias_key(name)] for name in input_fields(spec) if alias_key(name) in by_key}
    missing = [name for name, fact in spec.facts.items()
               if fact.required and name not in found and fact.from_timestamp not in found]
    if missing:
        shown = ", ".join(map(str, columns[:20])) + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")
        raise InputError(source, f"missing required column{'s' if len(missing) > 1 else ''}: "
                                 f"{', '.join(missing)} (columns found: {shown})", missing)
    clash = [c for c in columns if str(c) in OUTPUT_COLUMNS]
    if clash:
        raise InputError(source, f"input already has output column{'s' if len(clash) > 1 else ''} "
                                 f"{', '.join(map(str, clash))}: rename or drop it first", clash)
    return found


def unknown_columns(spec: PolicySpec, columns: list[str]) -> dict[str, str | None]:
    """Columns the policy does not read (they are kept and echoed), each with the field it is probably a
    misspelling of, or None. A second column naming a field in other case or spacing is one of them: the first
    is the one read."""
    unknown = unknown_fields(spec, [str(c) for c in columns], loose=True)
    seen: set[str] = set()
    for col in map(str, columns):
        key = alias_key(col)
        if col not in unknown and key in seen:
            unknown[col] = next(f for f in input_fields(spec) if alias_key(f) == key)
        seen.add(key)
    return {col: unknown[col] for col in map(str, columns) if col in unknown}


def check_strict_columns(spec: PolicySpec, columns: list[str], source: str = "input") -> None:
    """Refuse the columns that look like a field the policy reads but are not read (strict mode)."""
    near = {col: hint for col, hint in unknown_columns(spec, columns).items() if hint}
    if near:
        listed = ", ".join(f"{col!r} (did you mean {hint!r}?)" for col, hint in near.items())
        raise InputError(source, f"unknown column{'s' if len(near) > 1 else ''} {listed}", list(near))


@dataclass
class CellDecisions:
    """Per compiled policy: its fact space and the engine's answer for each canonical cell asked so far."""

    compiled: CompiledPolicy
    space: FactSpace = field(init=False)
    matched: dict[int, tuple[str, ...] | EngineError] = field(default_factory=dict)
    classes: OrderedDict[bytes, tuple[int, str | None]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.space = FactSpace.of(self.compiled.spec)

    def ask(self, canonical_cells: np.ndarray) -> list[tuple[str, ...] | EngineError]:
        """Matched rules of each canonical cell, asking durable_rules once per cell not seen before (about many at
        once); a cell past one of durable_rules' limits gets the EngineError saying so (its rows get that error)."""
        cells = canonical_cells.tolist()
        new = [cell for cell in dict.fromkeys(cells) if cell not in self.matched]
        facts = []
        for cell in new:
            one = self.space.facts_of(cell)
            assert one is not None, cell  # only cells that hold a value on every axis are asked
            facts.append(one)
        for cell, one, found in zip(new, facts, self.compiled.match_many(facts), strict=True):  # it asks in chunks
            self.matched[cell] = self._alone(one) if isinstance(found, EngineError) else found
        return [self.matched[cell] for cell in cells]

    def _alone(self, facts: Mapping[str, Any]) -> tuple[str, ...] | EngineError:
        """decision.match of one order, or the EngineError of a limit it is past (saying how many rules match)."""
        try:
            return match(self.compiled, facts)
        except EngineError as exc:
            if exc.code is None:
                raise
            return exc

    @cached_property
    def bits(self) -> RuleBits:
        return RuleBits(self.space)

    @cached_property
    def _ranked_ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.compiled.spec.ranked_rules())

    @cached_property
    def _axis_values(self) -> tuple[tuple[str, tuple[Any, ...], int | None], ...]:
        """Per axis: its fact, the value FactSpace.facts_of gives it in each bin (None: none), its 'not given' bin."""
        return tuple((axis.fact, tuple(map(axis.representative, range(axis.size))), axis.not_given_bin)
                     for axis in self.space.axes)

    def answer_classes(self, bits: np.ndarray, example_bins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(winner's rank or -1, error or None) of each set of matched rules (rows of bits packed as RuleBits
        packs them; example_bins: the bins of one cell of each), asking durable_rules once per set not seen
        before: the conditions decide which rules match, so cells matching the same rules share an answer."""
        winners = np.empty(len(bits), dtype=np.int64)
        reasons = np.empty(len(bits), dtype=object)
        keys = [row.tobytes() for row in bits]
        with self._lock:
            new = []
            for k, key in enumerate(keys):
                found = self.classes.get(key)
                if found is None:
                    new.append(k)
                else:
                    self.classes.move_to_end(key)
                    winners[k], reasons[k] = found
            for start in range(0, len(new), MATCH_CHUNK):  # the engine is asked about a chunk of sets at once
                chunk = np.array(new[start:start + MATCH_CHUNK], dtype=np.int64)
                for k, found in zip(chunk.tolist(), self._ask_classes(bits[chunk], [b[chunk] for b in example_bins]),
                                    strict=True):
                    winners[k], reasons[k] = self.classes[keys[k]] = found
                    while len(self.classes) > MAX_CLASS_ANSWERS:
                        self.classes.popitem(last=False)
        return winners, reasons

    def _ask_classes(self, bits: np.ndarray, example_bins: list[np.ndarray]) -> list[tuple[int, str | None]]:
        """The answers of sets of matched rules not seen before, from durable_rules asked about one cell of each in
        one call, each checked against the conditions: a disagreement is an error of its rows, never another set's
        answer."""
        facts = []
        for bins in np.stack(example_bins, axis=1).tolist() if example_bins else [[]] * len(bits):
            one = {}  # facts_of's facts on the axes: all the engine and the conditions read
            for (fact, values, not_given), b in zip(self._axis_values, bins, strict=True):
                assert values[b] is not None or b == not_given, fact  # a row's value lies in its cell
                if values[b] is not None:
                    one[fact] = values[b]
            facts.append(one)
        where, found = np.nonzero(np.unpackbits(bits, axis=1, bitorder="little", count=len(self._ranked_ids)))
        ends = np.cumsum(np.bincount(where, minlength=len(bits))).tolist()
        ranks = found.tolist()
        out = []
        for k, matched in enumerate(self.compiled.match_many(facts)):
            if isinstance(matched, EngineError):
                matched = self._alone(facts[k])
            positions = ranks[ends[k - 1] if k else 0:ends[k]]
            out.append(self._judge(positions, matched))
        return out

    def _judge(self, positions: list[int], matched: tuple[str, ...] | EngineError) -> tuple[int, str | None]:
        """The answer of a set of rules (their ranks) from what the engine matched in a cell of it."""
        if isinstance(matched, EngineError):
            return -1, str(matched)
        explained = tuple(self._ranked_ids[r] for r in positions)
        if explained != matched:
            return -1, str(EngineError(self.compiled.ruleset, "explanation",
                                       f"engine matched {matched}, conditions say {explained}"))
        if matched and (self.compiled.spec.hit_policy != "unique" or len(matched) == 1):
            return positions[0], None  # outcome's winner, found by rank instead of by id
        return -1, outcome(self.compiled.spec, matched)[1]


# Answers per set of matched rules kept per policy, most recently used first: each costs its bits (a bit a rule) and
# a tuple, under 40 MB at 65,536 sets of 1,000 rules; a 1 M-row marketplace batch (1,000 rules) meets about 8,000.
MAX_CLASS_ANSWERS = 65_536

# Cell answers of the policies used last, keyed by their whole content (compiler.policy_digest): the cell ids
# count enum values by position, so a name or a ruleset (blind to value order) is not enough. A table holds
# the fact space and a few thousand answers at most (well under 1 MB for the bundled policy).
MAX_CELL_TABLES = 16
_cells: LRU[str, CellDecisions] = LRU(MAX_CELL_TABLES)


def cell_decisions(compiled: CompiledPolicy) -> CellDecisions:
    return _cells.get_or_make(compiled.content_key, lambda: CellDecisions(compiled))


def evaluate_frame(compiled: CompiledPolicy, df: pd.DataFrame, as_of: datetime, method: Method = "cells",
                   source: str = "input", strict: bool = False) -> pd.DataFrame:
    """The input rows, in order, with the decision columns added. With strict, a column that looks like a
    misspelt field is an InputError (other unknown columns are kept and echoed)."""
    import pandas as pd

    from .tabular import OUTPUT_COLUMNS

    if method not in ("cells", "rows"):
        raise UsageError(f"method must be 'cells' or 'rows', got {method!r}", "method")
    columns = resolve_columns(compiled.spec, list(df.columns), source)
    if strict:
        check_strict_columns(compiled.spec, list(df.columns), source)
    decided = decide_frame(compiled, df, columns, as_of, method).frame_columns()
    out = df.copy()
    for name in OUTPUT_COLUMNS:  # each by name, in the one order of the output columns
        column = decided[name]
        out[name] = column if name == "policy_version" else pd.Series(column, index=df.index, dtype=object)
    return out


def decide_frame(compiled: CompiledPolicy, df: pd.DataFrame, columns: Mapping[str, str], as_of: datetime,
                 method: Method = "cells") -> Decided:
    """Each row's decision as codes (columns: field -> column of df, as resolve_columns gives them)."""
    from .decided import Decided
    from .frames import frame_orders

    decided = Decided.empty(compiled.spec, len(df))
    if method == "rows":
        for i, order in enumerate(frame_orders(df, columns)):
            _, rule_id, text, error = decide_row(compiled, order, as_of)
            decided.set_row(i, rule_id, text, error)
    elif len(df):
        _evaluate_cells(compiled, df, columns, as_of, decided)
    return decided


def _evaluate_cells(compiled: CompiledPolicy, df: pd.DataFrame, columns: Mapping[str, str], as_of: datetime,
                    decided: Decided) -> None:
    from .frames import frame_orders, normalize_frame

    spec = compiled.spec
    norm = normalize_frame(spec, df, columns, as_of)
    bad_rows = np.flatnonzero(norm.bad)
    # The reference path words the errors of bad rows.
    for i, order in zip(bad_rows.tolist(), frame_orders(df.iloc[bad_rows], columns), strict=True):
        try:
            normalize(spec, order, as_of)
        except OrderError as exc:
            decided.set_row(i, None, "", str(exc))
            continue
        _, rule_id, text, error = decide_row(compiled, order, as_of)  # vectorized check too strict
        decided.set_row(i, rule_id, text, error)
    if len(bad_rows) == len(df):
        return
    cells = cell_decisions(compiled)
    if len(bad_rows):  # every row is binned, a bad one (answered above) in the first good row's cell: picking
        first_good = int(np.argmin(norm.bad))  # out the good rows of every fact costs more than a few rows binned
        for column in norm.values.values():
            column[bad_rows] = column[first_good]
    bins = [axis.bins_of(norm.values[axis.fact]) for axis in cells.space.axes]
    state, bits = cells.bits.matched_rows(bins, len(df))  # rows -> sets of matched rules, vectorized
    first = np.empty(len(bits), dtype=np.int64)
    first[state[::-1]] = np.arange(len(state) - 1, -1, -1)  # the first row of each set
    winners, reasons = cells.answer_classes(bits, [b[first] for b in bins])
    row_winner = winners[state]
    error = decided.errors.codes(reasons)[state]
    if len(bad_rows):
        row_winner[bad_rows], error[bad_rows] = decided.winner[bad_rows], decided.error[bad_rows]
    decided.winner[:], decided.error[:] = row_winner, error
    good = np.flatnonzero(~norm.bad)
    _messages(spec, norm.values, good, row_winner[good] if len(bad_rows) else row_winner, decided)


def _messages(spec: PolicySpec, values: dict[str, np.ndarray], good: np.ndarray, row_winner: np.ndarray,
              decided: Decided) -> None:
    """The winners' messages of the good rows; the rows of every rule with the same template rendered together (a
    thousand-rule policy has a few dozen templates)."""
    from .template import render_codes

    index: dict[str, int] = {}
    template_of = np.array([index.setdefault(rule.message, len(index)) for rule in decided.rules] + [-1])
    row_template = template_of[row_winner]  # a winner of -1 picks the -1 appended: no message
    small = np.int16 if len(index) < 2 ** 15 else np.int64  # 16 bits sort by radix: 6x faster
    by_template = np.argsort(row_template.astype(small), kind="stable")  # each template's rows together, in order
    starts = np.searchsorted(row_template[by_template], np.arange(len(index) + 1))
    for k, template in enumerate(index):
        if starts[k + 1] == starts[k]:
            continue
        rows = good[by_template[starts[k]:starts[k + 1]]]
        rendered = render_codes(spec, template, values, rows)
        if isinstance(rendered, str):  # one text for all these rows; no message: none, as per row
            decided.message[rows] = decided.messages.code(rendered or None)
        else:
            decided.message[rows] = decided.messages.extend(*rendered)
