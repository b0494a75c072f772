"""Evaluate a DataFrame of orders: vectorized normalization, one engine call per distinct canonical cell.

Rows are never dropped or reordered: each input row gets action, rule_id, message, error, policy_version.
Bad rows get the per-row reference path's exact error text (they are rare, so it is asked per row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from .compiler import CompiledPolicy
from .decision import decide_row, match, outcome
from .errors import EngineError, InputError, OrderError, UsageError
from .facts import input_fields, normalize, unknown_fields
from .frames import frame_orders, normalize_frame
from .memo import LRU
from .model import Method, PolicySpec
from .space import FactSpace
from .tabular import OUTPUT_COLUMNS
from .template import render_rows
from .text import alias_key


def resolve_columns(spec: PolicySpec, columns: list[str], source: str = "input") -> dict[str, str]:
    """Field name -> input column, matching header case and surrounding spaces; checks required facts."""
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

    def __post_init__(self) -> None:
        self.space = FactSpace.of(self.compiled.spec)

    def ask(self, canonical_cells: np.ndarray) -> list[tuple[str, ...] | EngineError]:
        """Matched rules of each canonical cell, asking durable_rules once per cell not seen before; a cell past
        one of durable_rules' limits gets the EngineError saying so (its rows get that error)."""
        out = []
        for cell in canonical_cells.tolist():
            if cell not in self.matched:
                facts = self.space.facts_of(cell)
                assert facts is not None, cell  # only cells that hold a value on every axis are asked
                try:
                    self.matched[cell] = match(self.compiled, facts)
                except EngineError as exc:
                    if exc.code is None:
                        raise
                    self.matched[cell] = exc
            out.append(self.matched[cell])
        return out


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
    if method not in ("cells", "rows"):
        raise UsageError(f"method must be 'cells' or 'rows', got {method!r}", "method")
    spec = compiled.spec
    columns = resolve_columns(spec, list(df.columns), source)
    if strict:
        check_strict_columns(spec, list(df.columns), source)
    n = len(df)
    action, rule_id, message, error = (np.empty(n, dtype=object) for _ in range(4))  # all None
    if method == "rows":
        for i, order in enumerate(frame_orders(df, columns)):
            action[i], rule_id[i], text, error[i] = decide_row(compiled, order, as_of)
            message[i] = text or None
    elif n:
        _evaluate_cells(compiled, df, columns, as_of, action, rule_id, message, error)
    out = df.copy()
    decided = {"action": action, "rule_id": rule_id, "message": message, "error": error}
    for name in OUTPUT_COLUMNS:  # each by name, in the one order of the output columns
        if name == "policy_version":  # one value for every row: a categorical costs a byte a row, not a pointer
            out[name] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[spec.version])
        else:
            out[name] = pd.Series(decided[name], index=df.index, dtype=object)  # object: no string inference
    return out


def _evaluate_cells(compiled, df, columns, as_of, action, rule_id, message, error) -> None:
    spec = compiled.spec
    norm = normalize_frame(spec, df, columns, as_of)
    bad_rows = np.flatnonzero(norm.bad)
    # The reference path words the errors of bad rows.
    for i, order in zip(bad_rows, frame_orders(df.iloc[bad_rows], columns), strict=True):
        try:
            normalize(spec, order, as_of)
        except OrderError as exc:
            error[i] = str(exc)
            continue
        action[i], rule_id[i], text, error[i] = decide_row(compiled, order, as_of)  # vectorized check too strict
        message[i] = text or None
    good = np.flatnonzero(~norm.bad)
    if not len(good):
        return
    cells = cell_decisions(compiled)
    space = cells.space
    bins = [axis.bins_of(norm.values[axis.fact][good]) for axis in space.axes]
    codes, unique_cells = pd.factorize(space.cell_ids(bins))
    canonical_codes, canonical = pd.factorize(space.canonical(np.asarray(unique_cells, dtype=space.id_dtype)))
    ranked = spec.ranked_rules()
    rank = {r.id: k for k, r in enumerate(ranked)}
    winners = np.empty(len(canonical), dtype=np.int64)
    reasons = np.empty(len(canonical), dtype=object)
    for k, m in enumerate(cells.ask(np.asarray(canonical, dtype=space.id_dtype))):
        rule, reasons[k] = (None, str(m)) if isinstance(m, EngineError) else outcome(spec, m)
        winners[k] = -1 if rule is None else rank[rule.id]
    codes = canonical_codes[codes]
    row_winner = winners[codes]
    error[good] = reasons[codes]
    actions = np.array([r.action for r in ranked] + [None], dtype=object)
    ids = np.array([r.id for r in ranked] + [None], dtype=object)
    action[good] = actions[row_winner]
    rule_id[good] = ids[row_winner]
    for k, rule in enumerate(ranked):
        rows = good[row_winner == k]
        if len(rows):
            texts = render_rows(spec, rule.message, norm.values, rows)
            message[rows] = (texts or None) if isinstance(texts, str) else texts  # no message: None, as per row
