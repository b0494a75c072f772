"""Evaluate a DataFrame of orders: vectorized normalization, one engine call per distinct canonical cell.

Rows are never dropped or reordered: each input row gets action, rule_id, message, error, policy_version.
Bad rows get the per-row reference path's exact error text (they are rare, so it is asked per row).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from .compiler import CompiledPolicy
from .decision import decide_row, match, outcome
from .errors import EngineError, InputError, OrderError
from .facts import elapsed, enum_value, input_fields, is_blank, normalize, number_value, unknown_fields
from .model import MAX_NUMBER, TIME_UNITS, FactSpec, PolicySpec
from .space import NOT_GIVEN, FactSpace
from .tabular import OUTPUT_COLUMNS
from .template import render_rows
from .text import alias_key

_BAD = -2  # enum code of a value that is not valid


def resolve_columns(spec: PolicySpec, columns: list[str], source: str = "input") -> dict[str, str]:
    """Field name -> input column, matching header case and surrounding spaces; checks required facts."""
    by_key = {}
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
                try:
                    self.matched[cell] = match(self.compiled, self.space.facts_of(cell))
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
_cells: OrderedDict[str, CellDecisions] = OrderedDict()
_cells_lock = threading.Lock()


def cell_decisions(compiled: CompiledPolicy) -> CellDecisions:
    key = compiled.content_key
    with _cells_lock:
        table = _cells.get(key)
        if table is None:
            table = _cells[key] = CellDecisions(compiled)
            while len(_cells) > MAX_CELL_TABLES:
                _cells.popitem(last=False)
        _cells.move_to_end(key)
        return table


@dataclass
class _Normalized:
    """Normalized fact columns: enum codes (NOT_GIVEN, _BAD) and floats (NaN: not given), plus bad rows."""

    values: dict[str, np.ndarray]
    bad: np.ndarray


def _missing(raw: Any) -> bool:
    """A blank, or one of pandas' missing markers (in a frame NaN means 'not given')."""
    return is_blank(raw) or _missing_marker(raw)


def _missing_marker(value: Any) -> bool:
    """NaN, None, NA or NaT (a list or a dict is a value, never missing)."""
    return pd.api.types.is_scalar(value) and not isinstance(value, str) and pd.isna(value)


class _Own:
    """Stands for one unhashable cell in factorize: equal to nothing else, so judged on its own."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _factorize(col: pd.Series) -> tuple[np.ndarray, Any]:
    """(codes, distinct values) of a column; a cell holding a list or a dict is a distinct value of its own
    (pandas cannot hash it, and one such cell must not fail the whole batch)."""
    try:
        return pd.factorize(col, use_na_sentinel=False)
    except TypeError:
        keys = np.empty(len(col), dtype=object)
        for i, value in enumerate(col.to_numpy(dtype=object)):
            try:
                hash(value)
                keys[i] = value
            except TypeError:
                keys[i] = _Own(value)
        codes, uniques = pd.factorize(keys, use_na_sentinel=False)
        return codes, [u.value if isinstance(u, _Own) else u for u in uniques]


def _blank(col: pd.Series) -> np.ndarray:
    """Missing markers and empty or all-space text."""
    return (col.isna() | (col.astype("string").str.strip() == "")).to_numpy(dtype=bool, na_value=True)


def _enum_column(fact: FactSpec, col: pd.Series) -> np.ndarray:
    codes, uniques = _factorize(col)
    index = {v: i for i, v in enumerate(fact.values)}
    table = np.empty(len(uniques) + 1, dtype=np.int64)
    for i, raw in enumerate(uniques):
        if _missing(raw):
            value = fact.default
            table[i] = _BAD if value is None and fact.required else index.get(value, NOT_GIVEN)
        else:
            code, problem = enum_value(fact, raw)
            table[i] = _BAD if problem else index[code]
    return table[codes]


def _number_column(fact: FactSpec, col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN where not given, bad mask)."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        blank = np.isnan(values)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(values) | (np.abs(values) > MAX_NUMBER)
            if fact.min is not None:
                bad |= values < fact.min
            if fact.max is not None:
                bad |= values > fact.max
    else:  # text: parse each distinct spelling once, exactly as the per-row path does
        codes, uniques = _factorize(col)
        parsed = np.full(len(uniques), np.nan)
        unique_blank = np.zeros(len(uniques), dtype=bool)
        unique_bad = np.zeros(len(uniques), dtype=bool)
        for i, raw in enumerate(uniques):
            if _missing(raw):
                unique_blank[i] = True
                continue
            number, problem = number_value(fact, raw)
            unique_bad[i] = problem is not None
            parsed[i] = np.nan if problem else number
        values, blank, bad = parsed[codes], unique_blank[codes], unique_bad[codes]
        if col.dtype == object:  # factorize files True under 1.0; the per-row path rejects booleans
            is_bool = np.fromiter((isinstance(v, (bool, np.bool_)) for v in col), dtype=bool, count=len(col))
            bad |= is_bool
            values = np.where(is_bool, np.nan, values)
            blank &= ~is_bool
    return np.where(bad | blank, np.nan, values), bad  # defaults come after the timestamp, in normalize_frame


# Texts of this exact shape mean the same instant to pandas and to datetime.fromisoformat (the per-row
# parser), so they are parsed vectorized; every other value goes through the per-row parser itself.
_PLAIN_ISO = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
              r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$")


def _elapsed_column(fact: FactSpec, col: pd.Series, as_of: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(elapsed time in the fact's unit with NaN where blank, bad mask) for a timestamp column."""
    values = np.full(len(col), np.nan)
    bad = np.zeros(len(col), dtype=bool)
    plain = np.zeros(len(col), dtype=bool)
    if pd.api.types.is_string_dtype(col.dtype) and len(col):
        plain = col.astype("string").str.fullmatch(_PLAIN_ISO).to_numpy(dtype=bool, na_value=False)
        if col.dtype == object:  # astype would also turn a date object into matching text
            plain &= np.fromiter((isinstance(v, str) for v in col), dtype=bool, count=len(col))
    if plain.any():
        stamps = pd.to_datetime(col[plain], utc=True, format="ISO8601", errors="coerce", cache=False)
        # Whole microseconds, as datetime subtraction counts them, so both paths round alike.
        micros = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64)
        as_of_us = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us").astype(np.int64)
        amount = (as_of_us - micros) / 1e6 / TIME_UNITS[fact.per]
        parsed = ~stamps.isna().to_numpy() & (amount >= 0)
        values[np.flatnonzero(plain)[parsed]] = amount[parsed]
        plain[np.flatnonzero(plain)[~parsed]] = False  # invalid dates or future stamps: the per-row words
    rest = np.flatnonzero(~plain)
    if len(rest):
        codes, uniques = _factorize(col.iloc[rest])
        parsed_rest = np.full(len(uniques), np.nan)
        unique_bad = np.zeros(len(uniques), dtype=bool)
        for i, raw in enumerate(uniques):
            if _missing(raw):
                continue
            amount_i, problem = elapsed(fact, raw, as_of)
            unique_bad[i] = problem is not None
            parsed_rest[i] = np.nan if problem else amount_i
        values[rest], bad[rest] = parsed_rest[codes], unique_bad[codes]
    return values, bad


def normalize_frame(spec: PolicySpec, df: pd.DataFrame, columns: Mapping[str, str], as_of: datetime
                    ) -> _Normalized:
    bad = np.zeros(len(df), dtype=bool)
    values: dict[str, np.ndarray] = {}
    for name, fact in spec.facts.items():
        if fact.type == "string":
            if fact.required:
                col = df[columns[name]] if name in columns else pd.Series([None] * len(df))
                bad |= _blank(col)
            continue
        if fact.type == "enum":
            codes = _enum_column(fact, df[columns[name]]) if name in columns else \
                np.full(len(df), _BAD if fact.required else NOT_GIVEN if fact.default is None
                        else fact.values.index(fact.default), dtype=np.int64)
            bad |= codes == _BAD
            values[name] = codes
            continue
        if name in columns:
            number, number_bad = _number_column(fact, df[columns[name]])
        else:
            number, number_bad = np.full(len(df), np.nan), np.zeros(len(df), dtype=bool)
        if fact.from_timestamp in columns:
            # The number wins when both are given; the timestamp fills the rows where it is blank.
            fill = np.isnan(number) & ~number_bad
            stamp, stamp_bad = _elapsed_column(fact, df[columns[fact.from_timestamp]][fill], as_of)
            number[fill] = stamp
            number_bad[fill] |= stamp_bad
        blank = np.isnan(number) & ~number_bad  # neither the number nor its timestamp given
        if fact.default is not None:
            number[blank] = float(fact.default)
        elif fact.required:
            number_bad |= blank
        bad |= number_bad
        values[name] = number
    return _Normalized(values, bad)


def _row_orders(df: pd.DataFrame, columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows as orders keyed by field name; pandas' missing markers (NaN, None, NA, NaT) mean 'not given'."""
    names = list(columns)
    table = df[[columns[n] for n in names]].to_numpy(dtype=object)
    return [{n: None if _missing_marker(v) else v for n, v in zip(names, row)} for row in table]


def evaluate_frame(compiled: CompiledPolicy, df: pd.DataFrame, as_of: datetime, method: str = "cells",
                   source: str = "input", strict: bool = False) -> pd.DataFrame:
    """The input rows, in order, with the decision columns added. With strict, a column that looks like a
    misspelt field is an InputError (other unknown columns are kept and echoed)."""
    if method not in ("cells", "rows"):
        raise ValueError(f"method must be 'cells' or 'rows', got {method!r}")
    spec = compiled.spec
    columns = resolve_columns(spec, list(df.columns), source)
    if strict:
        check_strict_columns(spec, list(df.columns), source)
    n = len(df)
    action, rule_id, message, error = (np.empty(n, dtype=object) for _ in range(4))  # all None
    if method == "rows":
        for i, order in enumerate(_row_orders(df, columns)):
            action[i], rule_id[i], text, error[i] = decide_row(compiled, order, as_of)
            message[i] = text or None
    elif n:
        _evaluate_cells(compiled, df, columns, as_of, action, rule_id, message, error)
    out = df.copy()
    for name, values in zip(OUTPUT_COLUMNS, (action, rule_id, message, error)):
        out[name] = pd.Series(values, index=df.index, dtype=object)  # object: no costly string inference
    # One value for every row: a categorical costs a byte a row instead of a pointer.
    out["policy_version"] = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[spec.version])
    return out


def _evaluate_cells(compiled, df, columns, as_of, action, rule_id, message, error) -> None:
    spec = compiled.spec
    norm = normalize_frame(spec, df, columns, as_of)
    bad_rows = np.flatnonzero(norm.bad)
    for i, order in zip(bad_rows, _row_orders(df.iloc[bad_rows], columns)):  # the reference path words errors
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
    canonical_codes, canonical = pd.factorize(space.canonical(np.asarray(unique_cells, dtype=np.int64)))
    ranked = spec.ranked_rules()
    rank = {r.id: k for k, r in enumerate(ranked)}
    winners = np.empty(len(canonical), dtype=np.int64)
    reasons = np.empty(len(canonical), dtype=object)
    for k, m in enumerate(cells.ask(np.asarray(canonical, dtype=np.int64))):
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
