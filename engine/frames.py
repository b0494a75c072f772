"""Normalize a DataFrame of orders column by column: the vectorized twin of facts.normalize.

Each fact becomes one array: enum codes (NOT_GIVEN, INVALID) or floats (NaN: not given); a row with any bad
field is marked bad (its error is then worded by the per-row path). Each distinct spelling of a column is
parsed once, exactly as the per-row path parses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .facts import elapsed, enum_value, is_blank, number_value
from .model import INVALID, MAX_NUMBER, NOT_GIVEN, TIME_UNITS, FactSpec, PolicySpec


@dataclass
class Normalized:
    """Normalized fact columns: enum codes (NOT_GIVEN, INVALID) and floats (NaN: not given), plus bad rows."""

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
            table[i] = INVALID if value is None and fact.required else index.get(value, NOT_GIVEN)
        else:
            code, problem = enum_value(fact, raw)
            table[i] = INVALID if problem or code is None else index[code]
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


# Texts of this exact shape mean the same instant to Arrow and to datetime.fromisoformat (the per-row parser), so
# they are parsed vectorized; every other value goes through the per-row parser itself.
_PLAIN_ISO = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
              r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$")
_OFFSET = r"(Z|[+-]\d\d:\d\d)$"
_EXACT_MICROS = 2**53  # below this a count of microseconds is an exact float: one rounding, as timedelta divides


def _arrow_texts(col: pd.Series) -> pa.Array | None:
    """The column's text cells as an Arrow string array (null where not text), or None when it holds no text."""
    if not len(col) or not pd.api.types.is_string_dtype(col.dtype):
        return None
    if col.dtype == object:  # a date object, a number, a list: never taken for text
        is_text = np.fromiter((isinstance(v, str) for v in col), dtype=bool, count=len(col))
        return pa.array(np.where(is_text, col.to_numpy(dtype=object), None), type=pa.large_string())
    return pa.array(col.array, type=pa.large_string(), from_pandas=True)  # large: no 2 GB limit, no copy


def _plain_micros(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(plain mask, microseconds since the epoch where plain): the plain ISO 8601 stamps, parsed by Arrow. A date
    that does not exist (Feb 30, year 0) is not plain: the per-row parser words it."""
    plain = np.zeros(len(texts), dtype=bool)
    micros = np.zeros(len(texts), dtype=np.int64)
    given = np.flatnonzero(np.array(pc.greater(pc.binary_length(texts), 0).fill_null(False), dtype=bool))
    if not len(given):  # most cells of a timestamp column are often empty: the regex reads only the others
        return plain, micros
    plain[given] = np.array(pc.match_substring_regex(texts.take(pa.array(given)), _PLAIN_ISO), dtype=bool)
    rows = np.flatnonzero(plain)
    if not len(rows):
        return plain, micros
    stamps = texts.take(pa.array(rows))
    year, month, day = (pc.cast(pc.utf8_slice_codeunits(stamps, a, b), pa.int64()).to_numpy()
                        for a, b in ((0, 4), (5, 7), (8, 10)))
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[month] + (leap & (month == 2))
    real = (year >= 1) & (day <= month_days)
    zoned = pc.match_substring_regex(stamps, _OFFSET).to_numpy(zero_copy_only=False)
    for kind, which in ((pa.timestamp("us", "UTC"), real & zoned), (pa.timestamp("us"), real & ~zoned)):
        if which.any():  # a naive stamp is UTC, as parse_timestamp reads it
            parsed = pc.cast(stamps.filter(pa.array(which)), kind).cast(pa.int64())
            micros[rows[which]] = parsed.to_numpy()
    plain[rows[~real]] = False
    return plain, micros


def _elapsed_column(fact: FactSpec, col: pd.Series, as_of: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(elapsed time in the fact's unit with NaN where blank, bad mask) for a timestamp column."""
    values = np.full(len(col), np.nan)
    bad = np.zeros(len(col), dtype=bool)
    texts = _arrow_texts(col)
    plain, micros = _plain_micros(texts) if texts is not None else (np.zeros(len(col), dtype=bool), None)
    if micros is not None and plain.any():
        as_of_us = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us").astype(np.int64)
        delta = as_of_us - micros
        # Whole microseconds divided once, as timedelta.total_seconds() does; a future stamp or one centuries
        # away (not an exact float) is left to the per-row parser.
        plain &= (delta >= 0) & (delta < _EXACT_MICROS)
        values[plain] = delta[plain] / 1e6 / TIME_UNITS[fact.per]
    rest = np.flatnonzero(~plain)
    if texts is not None:  # an empty text is blank: nothing to parse
        rest = rest[np.array(pc.binary_length(texts.take(pa.array(rest))).fill_null(1), dtype=np.int64) > 0]
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
                    ) -> Normalized:
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
                np.full(len(df), INVALID if fact.required else NOT_GIVEN if fact.default is None
                        else fact.values.index(fact.default), dtype=np.int64)
            bad |= codes == INVALID
            values[name] = codes
            continue
        if name in columns:
            number, number_bad = _number_column(fact, df[columns[name]])
        else:
            number, number_bad = np.full(len(df), np.nan), np.zeros(len(df), dtype=bool)
        if fact.from_timestamp is not None and fact.from_timestamp in columns:
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
    return Normalized(values, bad)


def frame_orders(df: pd.DataFrame, columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows as orders keyed by field name; pandas' missing markers (NaN, None, NA, NaT) mean 'not given'."""
    names = list(columns)
    table = df[[columns[n] for n in names]].to_numpy(dtype=object)
    return [{n: None if _missing_marker(v) else v for n, v in zip(names, row, strict=True)} for row in table]
